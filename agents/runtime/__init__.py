"""What each daemon runs on: the persist-then-publish loop, MQTT link, keys, files, settings."""
