"""The manager's REST API: FastAPI routes over a control layer over the store.

Layers, top to bottom, each importing only those below it:

    main.py      builds the app from an `ApiContext` (nothing else)
    routes/      one router per resource: parse, call the control layer, shape
    schemas/     request and response bodies (what clients see)
    deps.py      typed dependencies: the context, the API-token guard
    control/     the operations, with no HTTP: reads from the mirror, CAS writes
                 to the store, `ControlError`s that `errors.py` maps to status codes

Start at `main.create_app`; a new resource is one control module, one schema module
and one router, plus one line in `main`.
"""
