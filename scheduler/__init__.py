"""Courts, people, reception rooms, petitions and visits: the booking side of vreception."""
