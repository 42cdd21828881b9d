"""The bridge as a pipeline: sources feed one vehicle hub, sinks subscribe to it.

```
 sources (poller.py, one per account) ──► hub.py (VehicleHub) ──► events.Sink ──► publisher.py
                                             ▲                                    (Home Assistant
 commands.py (CommandService) ───────────────┘ progress                             over MQTT)
        ▲ a command, from a sink's input side (intake.py: MQTT command topics)
```

`root.py` is the composition root: the only module that knows every part. Nothing here imports
`root.py`, no source or hub imports a sink, and the hub reaches sinks only through `Sink`.
"""
