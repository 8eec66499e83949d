"""The API's request and response bodies, one module per resource.

Stored documents (`controlplane.models`) are what the store holds; these are what a
client sends and sees. A request model forbids unknown fields, so a typo in a field
name is a 422 naming it rather than a silently ignored option.
"""
