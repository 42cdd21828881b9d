"""The web UI: a sink of the bridge that shows its state, links accounts and sends commands.

It reads the hub, sends commands through the command service and links accounts through each
provider plug-in's `WebLink`; it never talks to MQTT. `app.py` has the routes, `access.py` who
may use them, `views.py` what the pages show, `sink.py` what it learns from the hub.
"""
