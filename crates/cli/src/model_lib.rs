//! `tcc run` and `tcc bench` use a compiled model library through `tcc-model`, the one
//! loader of model libraries (its public C API only); this module binds the arrays of an npz
//! archive to the model's inputs by name and turns the outputs back into IR tensors.

use anyhow::{anyhow, Context, Result};
use std::path::Path;
use tcc_codegen::abi::dtype_code;
use tcc_ir::{with_data, DType, Tensor, TensorData};
use tcc_model::{Model, Outputs, TensorRef};

/// The C API dtype of an IR dtype.
fn api_dtype(dtype: DType) -> tcc_model::DType {
    tcc_model::DType::from_code(dtype_code(dtype)).expect("every IR dtype has a C API code")
}

/// The bytes of a tensor's elements, read in place.
fn bytes_of(data: &TensorData) -> &[u8] {
    with_data!(data, v => {
        // SAFETY: every IR element type is plain data without padding; the slice covers the
        // vector's elements exactly and borrows it.
        unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])) }
    })
}

/// Picks the model's inputs out of an npz's arrays by name, in the model's order, checked
/// against its interface. Arrays that are not inputs are ignored (a reference archive that
/// also holds expected outputs can be passed as it is). `npz` names the archive in errors.
pub fn bind<'a>(
    model: &Model,
    arrays: &'a [(String, Tensor)],
    npz: &Path,
) -> Result<Vec<TensorRef<'a>>> {
    let context = || {
        format!(
            "the arrays of `{}` do not fit the model `{}`",
            npz.display(),
            model.path().display()
        )
    };
    let mut named = Vec::with_capacity(arrays.len());
    for (name, t) in arrays {
        let tensor = TensorRef::from_bytes(api_dtype(t.dtype()), t.shape(), bytes_of(t.data()))
            .with_context(|| format!("array `{name}` of `{}`", npz.display()))?;
        named.push((name.as_str(), tensor));
    }
    let inputs = model.order(named, true).with_context(context)?;
    model.check(&inputs).with_context(context)?;
    Ok(inputs)
}

/// The outputs of a run as IR tensors, keyed by output name.
pub fn tensors(outputs: &Outputs<'_>) -> Result<Vec<(String, Tensor)>> {
    outputs
        .iter()
        .map(|o| {
            let dtype = DType::ALL
                .into_iter()
                .find(|&d| api_dtype(d) == o.dtype())
                .ok_or_else(|| anyhow!("output `{}` has an unknown dtype", o.name()))?;
            let data = TensorData::from_le_bytes(dtype, o.bytes())
                .ok_or_else(|| anyhow!("output `{}` is cut short", o.name()))?;
            let tensor = Tensor::new(o.dims().to_vec(), data).map_err(|e| anyhow!(e))?;
            Ok((o.name().to_owned(), tensor))
        })
        .collect()
}
