"""Serving on Ray Serve: an embedder and a reranker, each its own HTTP ingress.

``embedforge.serving.app.build_app(args)`` (and ``build_reranker_app(args)``) are what Serve configs import;
``embedforge.serving.app.start_local`` / ``stop_local`` run it on a local Ray.
"""
