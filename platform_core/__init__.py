"""The composition root: settings, URLs, the one versioned API, auth, start-up."""
