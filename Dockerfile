# imgcls serve, CPU only. Build:   docker build -t imgcls .
# It listens on 0.0.0.0, so it refuses to start without an API key. Run it with the key in a
# variable, or (better: variables show in `docker inspect`) in a secret file:
#   docker run -p 8000:8000 -v $PWD/runs/x:/model:ro -e IMGCLS_API_KEY="$KEY" imgcls
#   docker run -p 8000:8000 -v $PWD/runs/x:/model:ro -v $PWD/api_key:/run/secrets/api_key:ro
#       -e IMGCLS_API_KEY_FILE=/run/secrets/api_key imgcls          (one command)
# (Compose and Swarm secrets land in /run/secrets/<name> too.) IMGCLS_INSECURE=1 serves
# without a key. Every `imgcls serve` flag is also an IMGCLS_* variable (docs/deploy.md).
# tests/test_serve_container.py runs this CMD with these ENV values as uid 10001.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# The CPU wheels of torch are a fraction of the CUDA ones.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]"

# Never root; the model is mounted read-only at /model.
RUN useradd --create-home --uid 10001 imgcls
USER imgcls
ENV IMGCLS_MODEL=/model/model.safetensors \
    IMGCLS_HOST=0.0.0.0 \
    IMGCLS_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# exec form: SIGTERM reaches imgcls itself, which stops accepting and drains its queue.
CMD ["imgcls", "serve"]
