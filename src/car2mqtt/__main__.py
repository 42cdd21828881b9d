"""Allow ``python -m car2mqtt``."""

from car2mqtt.cli import main

main()
