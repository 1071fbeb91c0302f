"""``micropay demo``: the whole system as processes on a private Mosquitto, or in one process."""
