"""Serving on Ray Serve: an embedder and a reranker deployment behind one FastAPI ingress.

``embedforge.serving.app.build_app(args)`` is what Serve configs import;
``embedforge.serving.app.start_local`` / ``stop_local`` run it on a local Ray.
"""
