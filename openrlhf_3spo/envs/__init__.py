"""Text environments on one protocol (base.TextEnv): ALFWorld, WebShop; the async worker pool."""
