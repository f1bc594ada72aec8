//! `operation!`: declares one typed operation (a unit struct and its
//! [`crate::ops::Operation`] impl, and its [`crate::ops::ReadOperation`] or
//! [`crate::ops::WriteOperation`] impl) from its access, input, output, resources and handler.

macro_rules! operation {
    ($(#[$doc:meta])* $op:ident: $access:ident, $input:ty => $output:ty,
     resources(|$ri:ident, $ra:ident| $res:expr),
     handle(|$ctx:ident, $tx:ident, $i:ident| $body:expr) $(,)?) => {
        $(#[$doc])*
        pub struct $op;

        impl crate::ops::Operation for $op {
            const NAME: &'static str = stringify!($op);
            const ACCESS: crate::ops::Access = crate::ops::Access::$access;
            type Input = $input;
            type Output = $output;
            fn resources(
                $ri: &$input,
                $ra: &vpnroute_domain::ids::AccountId,
            ) -> Vec<String> {
                $res
            }
        }

        operation!(@handler $access, $op, $input, $output, |$ctx, $tx, $i| $body);
    };
    (@handler Read, $op:ident, $input:ty, $output:ty, |$ctx:ident, $tx:ident, $i:ident| $body:expr) => {
        impl crate::ops::ReadOperation for $op {
            fn handle(
                $ctx: &crate::state::OpCtx<'_>,
                $tx: &dyn vpnroute_store::ReadTx,
                $i: $input,
            ) -> Result<$output, vpnroute_domain::ApiError> {
                $body
            }
        }
    };
    (@handler Write, $op:ident, $input:ty, $output:ty, |$ctx:ident, $tx:ident, $i:ident| $body:expr) => {
        impl crate::ops::WriteOperation for $op {
            fn handle(
                $ctx: &crate::state::OpCtx<'_>,
                $tx: &dyn vpnroute_store::WriteTx,
                $i: $input,
            ) -> Result<$output, vpnroute_domain::ApiError> {
                $body
            }
        }
    };
}
