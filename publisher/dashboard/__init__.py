"""The live fleet dashboard: a feed of the broker's statuses and manifests, the view the page shows, and the
HTTP server that serves both (`rankcast dashboard`)."""
