"""The operators' console, served by the API process under ``/console/`` (docs/console.md):
server-rendered pages over the activity store, dead letters, webhook endpoints and providers."""
