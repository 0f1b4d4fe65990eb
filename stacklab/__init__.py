"""stacklab: the stack as a whole, and the two small modules every layer shares.

`stacklab.paths` is the layout under the stack root; `stacklab.tracing` continues a W3C trace and
records spans. Both use the standard library only: runc-py imports them on every container start.
"""
