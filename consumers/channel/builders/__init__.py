"""One module per channel: builds that channel's adapter from settings (``build(resources) -> adapter``)."""
