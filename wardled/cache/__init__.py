"""
The watch cache: one upstream watch, decoded once, fanned out to many watchers.

- L{wardled.cache.interfaces}: the contract (L{ICacher}, L{IWatcher}, the
  shared L{CacheEvent}, the errors).
- L{wardled.cache.multiplexer}: L{WatchMultiplexer}, the service that lists
  the group's keys, watches them and routes events to the caches.
- L{wardled.cache.cacher}: L{Cacher}, one resource's objects, history and
  watchers.
- L{wardled.cache.watcher}: L{CacheWatcher}, one client's bounded queue.
- L{wardled.cache.compact}: L{Packer}, objects held as their response JSON.
- L{wardled.cache.probe}: L{CoalescingProbe}, one storage revision probe
  shared by concurrent consistent reads.
- L{wardled.cache.waiters}: Deferreds for "revision reached" and "ready",
  with deadlines on the injected clock.
"""
