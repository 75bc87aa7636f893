"""The apps' HTTP API: the in-app inbox, preferences, quiet hours, device tokens and receipts.

Every request carries a bearer JWT naming the user (``sub``); every query is scoped by it.
``herald run api`` serves :func:`consumers.api.app.create_app` with uvicorn.
"""
