"""Vehicle clouds behind the Provider protocol, one plug-in folder each.

`registry.py` lists the plug-ins and is the one module outside their folders that names them;
`plugin.py` says what a plug-in is; `base.py` is the protocol the bridge sees. This package's
own module imports nothing, so importing any of them never drags the others in.
"""
