"""Plugging the admin API into the apps' API process: its context, routers and body limits."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis_asyncio
from fastapi import APIRouter

from consumers.api.admin import routes_events, routes_recipients, routes_topics
from consumers.api.admin.context import AdminContext
from consumers.api.admin.key_store import KeyStore
from consumers.api.admin.lookup_guard import LookupGuard
from consumers.api.admin.settings import AdminSettings
from consumers.api.ratelimit import RateLimiter
from consumers.classifier.routing import RoutingTable

__all__ = ["BATCH_PATHS", "admin_context", "admin_routers"]

BATCH_PATHS = ("/v1/events", "/v1/recipients:batch")  # bodies up to admin.batch_max_bytes


def admin_context(
    admin: AdminSettings, pool: asyncpg.Pool, redis: redis_asyncio.Redis, routing: RoutingTable
) -> AdminContext:
    keys = (
        KeyStore(pool, admin.key_pepper.get_secret_value().encode(), cache_ttl_s=admin.key_cache_ttl_s)
        if admin.key_pepper is not None
        else None
    )
    failures = RateLimiter(
        redis,
        limit=admin.key_lookups_per_client,
        window_s=admin.key_lookups_window_s,
        prefix=admin.key_lookups_prefix,
    )
    guard = LookupGuard(failures, remember_s=admin.key_lookups_remember_s)
    return AdminContext(keys=keys, redis=redis, routing=routing, settings=admin, guard=guard)


def admin_routers() -> list[APIRouter]:
    return [routes_recipients.router(), routes_events.router(), routes_topics.router()]
