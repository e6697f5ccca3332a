//! The memory a `ModelProto` takes once decoded, estimated from its wire form
//! before it is decoded.
//!
//! Decoding can take far more memory than the file: an empty `NodeProto` is
//! two bytes on the wire and a few hundred bytes decoded, an `int64_data`
//! element one byte and eight, so a 40 MB file of empty nodes would need
//! several GB. [`overhead`] walks the protobuf framing with the ONNX schema
//! (which field of which message holds which sub-message or packed scalars)
//! and adds up what decoding allocates beyond the file's own bytes: the
//! decoded struct of every sub-message, and every element of a repeated
//! scalar or string field, each counted twice for the slack of a growing
//! `Vec`. `load::decode_model` refuses a file whose estimate is over
//! [`MAX_DECODE_OVERHEAD`] before decoding it. Fields the schema here does
//! not name are skipped, as the decoder skips unknown fields.

use crate::proto;
use std::mem::size_of;

/// The most memory the decoded structure of a model may take beyond the
/// bytes of its file: 1 GiB, about four million nodes. Real models need a
/// few MB: their weights are bytes (`raw_data`), which decode to their own
/// size.
pub const MAX_DECODE_OVERHEAD: u64 = 1 << 30;

/// Deeper than this the decoder refuses the file (prost's recursion limit),
/// so the walk need not go further.
const MAX_DEPTH: usize = 100;

/// The ONNX messages the walk knows.
#[derive(Clone, Copy, Debug)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    Segment,
    Sparse,
    ValueInfo,
    Type,
    TypeTensor,
    TypeElem,
    TypeMap,
    TypeOpaque,
    Shape,
    Dim,
    Entry,
    Opset,
    Function,
    Training,
    Annotation,
    NodeDevice,
    Sharding,
    ShardedDim,
    SimpleSharded,
    IntIntList,
    Device,
}

/// What a field holds, as far as its decoded size goes.
#[derive(Clone, Copy, Debug)]
enum Field {
    /// A sub-message.
    Msg(Msg),
    /// Scalars that decode to 8 bytes each (int64, uint64, double).
    Wide,
    /// Scalars that decode to 4 bytes each (int32, float).
    Narrow,
    /// Strings or bytes.
    Bytes,
}

/// The decoded size of one `m`.
fn size(m: Msg) -> u64 {
    use proto::*;
    (match m {
        Msg::Model => size_of::<ModelProto>(),
        Msg::Graph => size_of::<GraphProto>(),
        Msg::Node => size_of::<NodeProto>(),
        Msg::Attribute => size_of::<AttributeProto>(),
        Msg::Tensor => size_of::<TensorProto>(),
        Msg::Segment => size_of::<tensor_proto::Segment>(),
        Msg::Sparse => size_of::<SparseTensorProto>(),
        Msg::ValueInfo => size_of::<ValueInfoProto>(),
        Msg::Type => size_of::<TypeProto>(),
        Msg::TypeTensor => {
            size_of::<type_proto::Tensor>().max(size_of::<type_proto::SparseTensor>())
        }
        Msg::TypeElem => size_of::<type_proto::Sequence>().max(size_of::<type_proto::Optional>()),
        Msg::TypeMap => size_of::<type_proto::Map>(),
        Msg::TypeOpaque => size_of::<type_proto::Opaque>(),
        Msg::Shape => size_of::<TensorShapeProto>(),
        Msg::Dim => size_of::<tensor_shape_proto::Dimension>(),
        Msg::Entry => size_of::<StringStringEntryProto>(),
        Msg::Opset => size_of::<OperatorSetIdProto>(),
        Msg::Function => size_of::<FunctionProto>(),
        Msg::Training => size_of::<TrainingInfoProto>(),
        Msg::Annotation => size_of::<TensorAnnotation>(),
        Msg::NodeDevice => size_of::<NodeDeviceConfigurationProto>(),
        Msg::Sharding => size_of::<ShardingSpecProto>(),
        Msg::ShardedDim => size_of::<ShardedDimProto>(),
        Msg::SimpleSharded => size_of::<SimpleShardedDimProto>(),
        Msg::IntIntList => size_of::<IntIntListEntryProto>(),
        Msg::Device => size_of::<DeviceConfigurationProto>(),
    }) as u64
}

/// Field `number` of message `m`: what it holds and whether it repeats.
/// Singular scalars and strings are left out: they live inside their
/// message's struct (a string's bytes are the file's own).
fn field(m: Msg, number: u64) -> Option<(Field, bool)> {
    use Field::{Bytes, Narrow, Wide};
    let msg = |m: Msg| Field::Msg(m);
    Some(match (m, number) {
        (Msg::Model, 7) => (msg(Msg::Graph), false),
        (Msg::Model, 8) => (msg(Msg::Opset), true),
        (Msg::Model, 14) => (msg(Msg::Entry), true),
        (Msg::Model, 20) => (msg(Msg::Training), true),
        (Msg::Model, 25) => (msg(Msg::Function), true),
        (Msg::Model, 26) => (msg(Msg::Device), true),
        (Msg::Graph, 1) => (msg(Msg::Node), true),
        (Msg::Graph, 5) => (msg(Msg::Tensor), true),
        (Msg::Graph, 15) => (msg(Msg::Sparse), true),
        (Msg::Graph, 11..=13) => (msg(Msg::ValueInfo), true),
        (Msg::Graph, 14) => (msg(Msg::Annotation), true),
        (Msg::Graph, 16) => (msg(Msg::Entry), true),
        (Msg::Node, 1 | 2) => (Bytes, true),
        (Msg::Node, 5) => (msg(Msg::Attribute), true),
        (Msg::Node, 9) => (msg(Msg::Entry), true),
        (Msg::Node, 10) => (msg(Msg::NodeDevice), true),
        (Msg::Attribute, 5) => (msg(Msg::Tensor), false),
        (Msg::Attribute, 6) => (msg(Msg::Graph), false),
        (Msg::Attribute, 22) => (msg(Msg::Sparse), false),
        (Msg::Attribute, 14) => (msg(Msg::Type), false),
        (Msg::Attribute, 7) => (Narrow, true),
        (Msg::Attribute, 8) => (Wide, true),
        (Msg::Attribute, 9) => (Bytes, true),
        (Msg::Attribute, 10) => (msg(Msg::Tensor), true),
        (Msg::Attribute, 11) => (msg(Msg::Graph), true),
        (Msg::Attribute, 23) => (msg(Msg::Sparse), true),
        (Msg::Attribute, 15) => (msg(Msg::Type), true),
        (Msg::ValueInfo, 2) => (msg(Msg::Type), false),
        (Msg::ValueInfo, 4) => (msg(Msg::Entry), true),
        (Msg::IntIntList, 2) => (Wide, true),
        (Msg::NodeDevice, 2) => (msg(Msg::Sharding), true),
        (Msg::Sharding, 2) => (Wide, true),
        (Msg::Sharding, 3) => (msg(Msg::IntIntList), true),
        (Msg::Sharding, 4) => (msg(Msg::ShardedDim), true),
        (Msg::ShardedDim, 2) => (msg(Msg::SimpleSharded), true),
        (Msg::Training, 1 | 2) => (msg(Msg::Graph), false),
        (Msg::Training, 3 | 4) => (msg(Msg::Entry), true),
        (Msg::Device, 3) => (Bytes, true),
        (Msg::Annotation, 2) => (msg(Msg::Entry), true),
        (Msg::Tensor, 1 | 7 | 11) => (Wide, true),
        (Msg::Tensor, 3) => (msg(Msg::Segment), false),
        (Msg::Tensor, 4 | 5) => (Narrow, true),
        (Msg::Tensor, 6) => (Bytes, true),
        (Msg::Tensor, 10) => (Wide, true),
        (Msg::Tensor, 13 | 16) => (msg(Msg::Entry), true),
        (Msg::Sparse, 1 | 2) => (msg(Msg::Tensor), false),
        (Msg::Sparse, 3) => (Wide, true),
        (Msg::Shape, 1) => (msg(Msg::Dim), true),
        (Msg::Type, 1 | 8) => (msg(Msg::TypeTensor), false),
        (Msg::Type, 4 | 9) => (msg(Msg::TypeElem), false),
        (Msg::Type, 5) => (msg(Msg::TypeMap), false),
        (Msg::Type, 7) => (msg(Msg::TypeOpaque), false),
        (Msg::TypeTensor, 2) => (msg(Msg::Shape), false),
        (Msg::TypeElem, 1) => (msg(Msg::Type), false),
        (Msg::TypeMap, 2) => (msg(Msg::Type), false),
        (Msg::Function, 4..=6) => (Bytes, true),
        (Msg::Function, 11) => (msg(Msg::Attribute), true),
        (Msg::Function, 7) => (msg(Msg::Node), true),
        (Msg::Function, 9) => (msg(Msg::Opset), true),
        (Msg::Function, 12) => (msg(Msg::ValueInfo), true),
        (Msg::Function, 14) => (msg(Msg::Entry), true),
        _ => return None,
    })
}

/// Reads a varint at `*pos`, or `None` at the end or on a malformed one.
fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The memory decoding `bytes` as a `ModelProto` allocates beyond the bytes
/// themselves, in bytes (an estimate that errs high). Malformed framing ends
/// the walk: the decoder refuses the file there too, having allocated at most
/// what came before.
pub fn overhead(bytes: &[u8]) -> u64 {
    size(Msg::Model).saturating_add(walk(bytes, Msg::Model, 0))
}

/// The overhead of the fields of one `m` encoded in `bytes`.
fn walk(bytes: &[u8], m: Msg, depth: usize) -> u64 {
    // Each element of a repeated field counts twice: a Vec grows by doubling.
    const SLACK: u64 = 2;
    let string = size_of::<String>() as u64;
    let mut total = 0u64;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(tag) = varint(bytes, &mut pos) else {
            break;
        };
        let (number, wire) = (tag >> 3, tag & 7);
        let f = field(m, number);
        // The payload of a length-delimited field, and the scalar count of
        // any other.
        let payload = match wire {
            0 => {
                if varint(bytes, &mut pos).is_none() {
                    break;
                }
                None
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if bytes.len() - pos < n {
                    break;
                }
                pos += n;
                None
            }
            2 => {
                let Some(len) = varint(bytes, &mut pos) else {
                    break;
                };
                let Some(len) = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= bytes.len() - pos)
                else {
                    break;
                };
                let p = &bytes[pos..pos + len];
                pos += len;
                Some(p)
            }
            _ => break,
        };
        let Some((kind, repeated)) = f else {
            continue;
        };
        let copies = if repeated { SLACK } else { 1 };
        let cost = match (kind, payload) {
            (Field::Msg(sub), Some(p)) => {
                let inner = if depth < MAX_DEPTH {
                    walk(p, sub, depth + 1)
                } else {
                    0
                };
                (size(sub) * copies).saturating_add(inner)
            }
            (Field::Bytes, Some(_)) if repeated => string * SLACK,
            // Packed scalars: one element per varint (a byte without its
            // high bit ends one) or per 4 or 8 bytes.
            (Field::Wide, Some(p)) => {
                p.iter().filter(|&&b| b & 0x80 == 0).count() as u64 * 8 * SLACK
            }
            (Field::Narrow, Some(p)) => {
                p.iter().filter(|&&b| b & 0x80 == 0).count() as u64 * 4 * SLACK
            }
            // One unpacked scalar.
            (Field::Wide, None) => 8 * SLACK,
            (Field::Narrow, None) => 4 * SLACK,
            _ => 0,
        };
        total = total.saturating_add(cost);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn empty_nodes_cost_their_decoded_size() {
        let n = 1000;
        let model = proto::ModelProto {
            graph: Some(proto::GraphProto {
                node: vec![proto::NodeProto::default(); n],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = model.encode_to_vec();
        let est = overhead(&bytes);
        let node = size_of::<proto::NodeProto>() as u64;
        assert!(est >= n as u64 * node, "{est} < {n} nodes of {node} bytes");
        assert!(
            est <= 3 * n as u64 * node,
            "{est} is far above {n} nodes of {node}"
        );
    }

    #[test]
    fn packed_int64_data_counts_per_element() {
        let t = proto::TensorProto {
            int64_data: vec![1; 1000],
            ..Default::default()
        };
        let model = proto::ModelProto {
            graph: Some(proto::GraphProto {
                initializer: vec![t],
                ..Default::default()
            }),
            ..Default::default()
        };
        let est = overhead(&model.encode_to_vec());
        assert!(est >= 8000, "{est}");
    }

    #[test]
    fn raw_data_costs_nothing_beyond_its_bytes() {
        let t = proto::TensorProto {
            raw_data: Some(vec![0x80; 1 << 20]),
            ..Default::default()
        };
        let model = proto::ModelProto {
            graph: Some(proto::GraphProto {
                initializer: vec![t],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(overhead(&model.encode_to_vec()) < 4096);
    }

    #[test]
    fn truncated_framing_ends_the_walk() {
        let model = proto::ModelProto {
            graph: Some(proto::GraphProto {
                node: vec![proto::NodeProto::default(); 10],
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = model.encode_to_vec();
        // Every prefix walks without panicking.
        for n in 0..bytes.len() {
            let _ = overhead(&bytes[..n]);
        }
    }
}
