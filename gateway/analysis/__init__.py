"""Analysis as counts and dates: an analyst's view of one person, and the partnership's strategic picture."""
