//! The few protobuf messages client-side downscoping needs, derived by hand (no `protoc`): Tink's
//! `Keyset` and `AesGcmKey` (`tink/proto/tink.proto`, `aes_gcm.proto`), the
//! `ClientSideAccessBoundary` Google's client libraries serialize, and the parsed CEL AST
//! (`google.api.expr.v1alpha1.Expr`, identical on the wire to `cel.expr.Expr`).
//!
//! The emulator declares the same messages again on purpose: it shares no code with the
//! clients it tests, so a wire-format mistake here cannot pass because the emulator made it too.

#![allow(unreachable_pub, missing_docs)]

/// `google.crypto.tink.Keyset`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Keyset {
    #[prost(uint32, tag = "1")]
    pub primary_key_id: u32,
    #[prost(message, repeated, tag = "2")]
    pub key: Vec<KeysetKey>,
}

/// `google.crypto.tink.Keyset.Key`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeysetKey {
    #[prost(message, optional, tag = "1")]
    pub key_data: Option<KeyData>,
    /// `KeyStatusType`: 1 enabled, 2 disabled, 3 destroyed.
    #[prost(int32, tag = "2")]
    pub status: i32,
    #[prost(uint32, tag = "3")]
    pub key_id: u32,
    /// `OutputPrefixType`: 1 TINK, 2 LEGACY, 3 RAW, 4 CRUNCHY.
    #[prost(int32, tag = "4")]
    pub output_prefix_type: i32,
}

/// `google.crypto.tink.KeyData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyData {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    /// `KeyMaterialType`: 1 symmetric.
    #[prost(int32, tag = "3")]
    pub key_material_type: i32,
}

/// `google.crypto.tink.AesGcmKey`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AesGcmKey {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub key_value: Vec<u8>,
}

pub const STATUS_ENABLED: i32 = 1;
pub const PREFIX_TINK: i32 = 1;
pub const PREFIX_RAW: i32 = 3;
pub const AES_GCM_TYPE_URL: &str = "type.googleapis.com/google.crypto.tink.AesGcmKey";

/// `ClientSideAccessBoundary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientSideAccessBoundary {
    #[prost(message, repeated, tag = "1")]
    pub access_boundary_rules: Vec<ClientSideAccessBoundaryRule>,
}

/// `ClientSideAccessBoundaryRule` (field 3 is unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientSideAccessBoundaryRule {
    #[prost(string, tag = "1")]
    pub available_resource: String,
    #[prost(string, repeated, tag = "2")]
    pub available_permissions: Vec<String>,
    #[prost(message, optional, tag = "4")]
    pub compiled_availability_condition: Option<Expr>,
}

/// A CEL expression node (`Expr`): an id and one kind.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Expr {
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(oneof = "ExprKind", tags = "3, 4, 5, 6")]
    pub expr_kind: Option<ExprKind>,
}

/// The kinds of [`Expr`] the compiler emits.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ExprKind {
    #[prost(message, tag = "3")]
    Const(Constant),
    #[prost(message, tag = "4")]
    Ident(Ident),
    #[prost(message, tag = "5")]
    Select(Box<Select>),
    #[prost(message, tag = "6")]
    Call(Box<Call>),
}

/// `Expr.Ident`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ident {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `Expr.Select`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Select {
    #[prost(message, optional, boxed, tag = "1")]
    pub operand: Option<Box<Expr>>,
    #[prost(string, tag = "2")]
    pub field: String,
    #[prost(bool, tag = "3")]
    pub test_only: bool,
}

/// `Expr.Call`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Call {
    #[prost(message, optional, boxed, tag = "1")]
    pub target: Option<Box<Expr>>,
    #[prost(string, tag = "2")]
    pub function: String,
    #[prost(message, repeated, tag = "3")]
    pub args: Vec<Expr>,
}

/// `Constant` (only strings are emitted).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Constant {
    #[prost(oneof = "ConstantKind", tags = "6")]
    pub constant_kind: Option<ConstantKind>,
}

/// The kinds of [`Constant`] the compiler emits.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ConstantKind {
    #[prost(string, tag = "6")]
    StringValue(String),
}
