# GPU image for distillation and TensorRT export: NVIDIA's PyTorch container ships CUDA, cuDNN,
# PyTorch/torchvision and the TensorRT Python bindings, so nothing heavy is built here.
#   docker build -t compress .
#   docker run --gpus all --rm -v $PWD/runs:/work/runs compress run pipelines/fashion_mnist_gpu.yaml --out /work/runs/gpu
FROM nvcr.io/nvidia/pytorch:25.10-py3

# Fashion-MNIST, the embedded default dataset (Ubuntu universe carries Debian's package).
RUN apt-get update \
 && (apt-get install -y --no-install-recommends dataset-fashion-mnist || echo "dataset-fashion-mnist unavailable: use --download") \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/compress
COPY pyproject.toml README.md ./
COPY compress ./compress
COPY deploy ./deploy
COPY pipelines ./pipelines
# torch/torchvision/tensorrt come from the base image; onnxruntime-gpu replaces the CPU build.
RUN pip install --no-cache-dir -e ./deploy -e '.[onnx,report]' cuda-python onnxruntime-gpu \
 && python -c "import tensorrt, torch; print('tensorrt', tensorrt.__version__, 'torch', torch.__version__)"

WORKDIR /work
ENTRYPOINT ["compress"]
CMD ["--help"]
