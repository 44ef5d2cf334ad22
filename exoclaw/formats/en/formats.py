"""Date formats for English: Django's, with the time zone named (`Nov. 25, 2026, 2:26 p.m. UTC`), so
an operator never has to guess which zone the admin shows (settings.TIME_ZONE, UTC by default)."""

DATETIME_FORMAT = "N j, Y, P T"
SHORT_DATETIME_FORMAT = "m/d/Y P T"
TIME_FORMAT = "P T"
