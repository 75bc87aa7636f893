"""The generic channel consumer: render, deliver through an adapter, publish the outcome."""
