//! Warren's declarative vocabulary.
//!
//! The pure types every other crate shares when it talks about what an environment should be:
//! environment names, byte sizes (`64M`), cpu shares (`0.5`); the manifest that declares a host
//! and its environments ([`parse_manifest`], schema in `docs/manifest.md`); and the planner
//! [`plan`](fn@plan)`(observed, desired)` that `warren apply` carries out. Each parser rejects
//! bad input with an error that quotes the input and says what was expected; manifest errors
//! also name the file, line, column and key. Only [`load_manifest`] does I/O (it reads the
//! file).
#![forbid(unsafe_code)]

pub mod caps;
pub mod etc;
mod image_name;
pub mod limits;
pub mod manifest;
pub mod mount;
mod name;
pub mod net;
pub mod plan;
mod quantity;

pub use caps::{Capability, CapabilityError};
pub use image_name::{ImageName, ImageNameError};
pub use limits::{Bound, LimitError, validate_space};
pub use manifest::{
    HostSpec, ImageSpec, Manifest, ManifestError, RestartPolicy, SpaceSpec, TemplateSpec,
    load_manifest, parse_manifest,
};
pub use name::{EnvName, NameError};
pub use net::{Cidr, NetError, NetSpec, Proto, Publish, VethSpec};
pub use plan::{Action, Change, Observed, Step, plan, summary};
pub use quantity::{ByteSize, CpuQuota, QuantityError};
