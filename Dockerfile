# imgcls serve, CPU only. Build:   docker build -t imgcls .
# Run:   docker run -p 8000:8000 -v $PWD/runs/x:/model:ro -e IMGCLS_API_KEY=... imgcls
# Every `imgcls serve` flag is also an IMGCLS_* variable (see docs/deploy.md).
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
