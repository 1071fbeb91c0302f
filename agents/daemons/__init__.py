"""The three daemons (broker, vendor, buyer), their stores and the broker's operator input."""
