"""The control layer: every operation the API offers, with no HTTP in it.

Routes are thin: they parse a request, call one function here, and shape the answer.
These functions read through the mirror (`view.ClusterView`), write desired state to the
store in compare-and-swap transactions (`writes`), and refuse bad requests by raising
`errors.ControlError`s that say what to do. One module per resource, as swarmkit's
controlapi: `cluster` (init, join, tokens), `swarm`, `nodes`, `services`, `tasks`.
"""
