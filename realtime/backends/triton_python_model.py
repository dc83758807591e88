"""Triton Python-backend model: the exported ViTPose ONNX graph run by ONNX Runtime inside Triton Inference Server.

``export-triton --format python-onnx`` copies this file to ``<model>/1/model.py`` beside ``model.onnx``. It is
for servers without Triton's own ONNX Runtime backend, such as the ``tritonserver`` shipped in PyPI's
``nvidia-pytriton`` wheel (Python backend only; what the tests and ``scripts/triton_local.sh`` run). It runs in the
server's Python (which needs numpy and onnxruntime), so it imports nothing from ``realtime``.

All requests the dynamic batcher hands to one ``execute`` call are concatenated into one ONNX Runtime batch, so
crops from several clients are run together. Optional ``parameters`` in ``config.pbtxt``: ``onnx_file`` (default
``model.onnx``) and ``intra_op_threads`` (default 0: ONNX Runtime's choice).
"""

from __future__ import annotations

import json
import os

import numpy as np

try:
    import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend inside the server
except ImportError:  # imported elsewhere (import checks, docs): the class is only used inside the server
    pb_utils = None

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class TritonPythonModel:
    """One model instance: one ONNX Runtime session."""

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file") or "model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads") or 0)
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device = int(args.get("model_instance_device_id") or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device}))  # type: ignore[arg-type]
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        self.onnx_input = self.session.get_inputs()[0]
        self.onnx_output = self.session.get_outputs()[0]
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(config["output"][0]["data_type"])
        self.feed_dtype = _ORT_TYPES.get(self.onnx_input.type, np.float32)

    def execute(self, requests: list) -> list:
        arrays = [pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy() for request in requests]
        try:
            batch = np.ascontiguousarray(np.concatenate(arrays), dtype=self.feed_dtype)
            out = self.session.run([self.onnx_output.name], {self.onnx_input.name: batch})[0]
            out = out.astype(self.output_dtype, copy=False)
        except Exception as exc:  # one failed batch fails its requests, not the server
            error = pb_utils.TritonError(f"ONNX Runtime failed: {' '.join(str(exc).split())[:300]}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for array in arrays:
            part = out[start:start + len(array)]
            start += len(array)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)]))
        return responses

    def finalize(self) -> None:
        self.session = None
