"""History: charging sessions, trips and samples, recorded from what the bridge sees."""
