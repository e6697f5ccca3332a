//! ONNX import: decodes ModelProto and lowers its graph into the IR.
