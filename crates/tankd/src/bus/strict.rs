//! Strict arguments for tankd's interfaces.
//!
//! zbus's `#[interface]` dispatch deserializes a call's arguments itself:
//! a wrong type is answered with the catch-all `org.freedesktop.zbus.Error`,
//! and a method without arguments ignores whatever it is sent
//! (`ListPods s x` succeeds). [`Strict`] wraps a generated interface and
//! checks every call's signature against the interface's own
//! introspection before the call reaches it: a wrong type, a missing or an
//! extra argument is answered with `org.freedesktop.DBus.Error.InvalidArgs`
//! naming the method and what it takes, and the method never runs. The
//! expected signatures are read from the wrapped interface, so they cannot
//! drift from its methods.
//!
//! The signature compared is the one the message header spells: zbus
//! parses a body of four arguments `ssbu` and one struct argument `(ssbu)`
//! into the same value, D-Bus does not.
//!
//! This implements `zbus::object_server::Interface` by delegation. zbus
//! calls that trait unstable across minor versions; Cargo.lock pins zbus,
//! so a change there breaks the build, not the behaviour.

use std::collections::HashMap;

use zbus::fdo;
use zbus::message::{Header, Message};
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult2, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, ObjectServer};

/// An interface whose methods are only called with exactly the arguments
/// they declare.
pub struct Strict<I> {
    inner: I,
    /// Method name → the signature of its in-arguments (`""`: none).
    methods: HashMap<String, String>,
}

impl<I: Interface> Strict<I> {
    pub fn new(inner: I) -> Strict<I> {
        let methods = in_signatures(&inner);
        Strict { inner, methods }
    }

    /// The answer to a call of `method` whose arguments do not match, or
    /// `None` to let the call through (an unknown method is the wrapped
    /// interface's to answer).
    fn refuse(&self, msg: &Message, method: &str) -> Option<fdo::Error> {
        let expected = self.methods.get(method)?;
        let sent = header_signature(&msg.data()[..])
            .unwrap_or_else(|| msg.body().signature().to_string_no_parens());
        mismatch(method, expected, &sent).map(fdo::Error::InvalidArgs)
    }
}

/// What is wrong with sending `sent` to `method`, which takes `expected`.
fn mismatch(method: &str, expected: &str, sent: &str) -> Option<String> {
    if sent == expected {
        return None;
    }
    let takes = if expected.is_empty() {
        format!("{method} takes no arguments")
    } else {
        format!("{method} takes arguments of type \"{expected}\"")
    };
    Some(if sent.is_empty() {
        format!("{takes}, got none")
    } else {
        format!("{takes}, got \"{sent}\"")
    })
}

/// Method name → in-argument signature, from `iface`'s introspection.
fn in_signatures(iface: &impl Interface) -> HashMap<String, String> {
    let mut xml = String::from("<node>");
    iface.introspect_to_writer(&mut xml, 0);
    xml.push_str("</node>");
    let node =
        zbus_xml::Node::from_reader(xml.as_bytes()).expect("zbus writes valid introspection XML");
    node.interfaces()
        .iter()
        .flat_map(|i| i.methods())
        .map(|m| {
            let ins = m
                .args()
                .iter()
                .filter(|a| a.direction() != Some(zbus_xml::ArgDirection::Out))
                .map(|a| a.ty().to_string())
                .collect();
            (m.name().to_string(), ins)
        })
        .collect()
}

/// The body signature as the header of the raw message `bytes` spells it
/// (`""`: no body). `None` if the header holds something this reader does
/// not know (dbus-daemon only forwards well-formed messages; a header
/// field of a future type is not one of them today).
fn header_signature(bytes: &[u8]) -> Option<String> {
    const SIGNATURE_FIELD: u8 = 8;
    let big_endian = match bytes.first()? {
        b'l' => false,
        b'B' => true,
        _ => return None,
    };
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        let value = if big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        };
        usize::try_from(value).ok()
    };
    let align = |at: usize, to: usize| at.div_ceil(to) * to;
    // Fixed part: endianness, type, flags, version, body length, serial;
    // then the array of (code, variant) header fields.
    let end = 16usize.checked_add(u32_at(12)?)?;
    let mut at = 16;
    loop {
        at = align(at, 8);
        if at >= end {
            return Some(String::new());
        }
        let code = *bytes.get(at)?;
        let type_len = usize::from(*bytes.get(at + 1)?);
        let field_type = bytes.get(at + 2..at + 2 + type_len)?;
        at += 2 + type_len + 1;
        match field_type {
            b"s" | b"o" => {
                at = align(at, 4);
                at += 4 + u32_at(at)? + 1;
            }
            b"g" => {
                let len = usize::from(*bytes.get(at)?);
                let value = bytes.get(at + 1..at + 1 + len)?;
                if code == SIGNATURE_FIELD {
                    return String::from_utf8(value.to_vec()).ok();
                }
                at += 1 + len + 1;
            }
            b"u" => at = align(at, 4) + 4,
            _ => return None,
        }
    }
}

#[zbus::export::async_trait::async_trait]
impl<I: Interface> Interface for Strict<I> {
    fn name() -> InterfaceName<'static> {
        I::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.inner.spawn_tasks_for_methods()
    }

    async fn get(
        &self,
        property_name: &str,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<OwnedValue>> {
        self.inner
            .get(property_name, server, connection, header, emitter)
            .await
    }

    async fn get_all(
        &self,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        self.inner
            .get_all(server, connection, header, emitter)
            .await
    }

    fn set<'call>(
        &'call self,
        property_name: &'call str,
        value: &'call Value<'_>,
        server: &'call ObjectServer,
        connection: &'call Connection,
        header: Option<&'call Header<'_>>,
        emitter: &'call SignalEmitter<'_>,
    ) -> DispatchResult2<'call> {
        self.inner
            .set(property_name, value, server, connection, header, emitter)
    }

    async fn set_mut(
        &mut self,
        property_name: &str,
        value: &Value<'_>,
        server: &ObjectServer,
        connection: &Connection,
        header: Option<&Header<'_>>,
        emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<()>> {
        self.inner
            .set_mut(property_name, value, server, connection, header, emitter)
            .await
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        match self.refuse(msg, name.as_str()) {
            Some(err) => DispatchResult2::Async(Box::pin(async move { Err(err) })),
            None => self.inner.call(server, connection, msg, name),
        }
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        match self.refuse(msg, name.as_str()) {
            Some(err) => DispatchResult2::Async(Box::pin(async move { Err(err) })),
            None => self.inner.call_mut(server, connection, msg, name),
        }
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        self.inner.introspect_to_writer(writer, level)
    }
}

#[cfg(test)]
mod tests {
    use zbus::zvariant::{StructureBuilder, Value};

    use super::*;

    struct Example;

    #[zbus::interface(name = "org.tank.Example")]
    impl Example {
        fn none(&self) {}
        #[zbus(out_args("n"))]
        fn four(&self, _a: &str, _b: &str, _c: bool, _d: u32) -> u32 {
            0
        }
        fn dict(
            &self,
            #[zbus(header)] _header: Header<'_>,
            _argv: Vec<String>,
            _opts: HashMap<String, OwnedValue>,
        ) {
        }
        #[zbus(property)]
        fn size(&self) -> u64 {
            0
        }
    }

    fn message<B>(body: &B) -> Message
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        Message::method_call("/org/tank/Example", "Four")
            .unwrap()
            .interface("org.tank.Example")
            .unwrap()
            .build(body)
            .unwrap()
    }

    #[test]
    fn expected_signatures_come_from_the_introspection() {
        let methods = in_signatures(&Example);
        assert_eq!(methods.len(), 3, "{methods:?}");
        assert_eq!(methods["None"], "");
        assert_eq!(methods["Four"], "ssbu");
        // The header argument is not on the bus.
        assert_eq!(methods["Dict"], "asa{sv}");
    }

    #[test]
    fn the_header_spells_the_signature_as_sent() {
        let four = message(&("a", "b", true, 1u32));
        assert_eq!(header_signature(&four.data()[..]).unwrap(), "ssbu");
        // One struct argument: zbus's parsed signature is the same as above.
        let fields = StructureBuilder::new()
            .add_field("a")
            .add_field("b")
            .add_field(true)
            .add_field(1u32)
            .build()
            .unwrap();
        let one = message(
            &StructureBuilder::new()
                .append_field(Value::from(fields))
                .build()
                .unwrap(),
        );
        assert_eq!(header_signature(&one.data()[..]).unwrap(), "(ssbu)");
        assert_eq!(
            one.body().signature().to_string_no_parens(),
            four.body().signature().to_string_no_parens(),
            "why the raw header is read"
        );
        let empty = message(&());
        assert_eq!(header_signature(&empty.data()[..]).unwrap(), "");
        // Big-endian messages, as another client may send them.
        let big = Message::method_call("/o", "M")
            .unwrap()
            .endian(zbus::zvariant::Endian::Big)
            .sender(":1.7")
            .unwrap()
            .build(&("x", 5i64))
            .unwrap();
        assert_eq!(header_signature(&big.data()[..]).unwrap(), "sx");
        // Garbage is no header.
        assert_eq!(header_signature(b"xyz"), None);
        assert_eq!(header_signature(&four.data()[..20]), None);
    }

    #[test]
    fn mismatches_name_the_method_and_what_it_takes() {
        assert_eq!(mismatch("Get", "s", "s"), None);
        assert_eq!(mismatch("ListPods", "", ""), None);
        assert_eq!(
            mismatch("ListPods", "", "s").unwrap(),
            "ListPods takes no arguments, got \"s\""
        );
        assert_eq!(
            mismatch("Get", "s", "u").unwrap(),
            "Get takes arguments of type \"s\", got \"u\""
        );
        assert_eq!(
            mismatch("Logs", "ssbu", "").unwrap(),
            "Logs takes arguments of type \"ssbu\", got none"
        );
        assert!(mismatch("Logs", "ssbu", "(ssbu)").is_some());
    }
}
