"""Operating the MQTT side: Mosquitto config and users, its password file, TLS, the retain guard."""
