"""A fleet behind emulated links: profiles (links), the one link emulator (link_proxy, and link_thread for
synchronous callers, with publish_counter as a tap), device clients on one event loop (clients), the run
of a release per strategy (config, inputs, runner, results) and what it leaves behind (report, progress).
"""
