"""fastnn."""
