"""One router per resource; each handler parses, calls the control layer, shapes."""
