//! The contract a component offers its clients, as data: every event a
//! client may send (its payload and the fields of its `{ok:true, …}` ack)
//! and every event the server sends, each described by the schema of the
//! Rust type that (de)serializes it (`utoipa::ToSchema`), so the
//! description cannot drift from the code. The binary renders the
//! contracts as a JSON Schema document and as TypeScript declarations for
//! socket.io-client's typed sockets.

use std::borrow::Cow;

use utoipa::ToSchema;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{Ref, RefOr};

/// A named schema the events refer to.
pub type NamedSchema = (String, RefOr<Schema>);

/// One event of a contract.
#[derive(Clone)]
pub struct Event {
    /// The event's name on the wire.
    pub name: &'static str,
    /// What it is for, in one line.
    pub doc: &'static str,
    /// Its one argument, if it takes one.
    pub payload: Option<RefOr<Schema>>,
    /// For a client event: the fields of its `{ok:true, …}` ack (every
    /// client event is acked; `None` when the ack carries no field).
    pub ack: Option<RefOr<Schema>>,
}

/// What one component's namespace accepts and sends.
#[derive(Clone, Default)]
pub struct Contract {
    /// The component's name, as a namespace's `handler` gives it.
    pub component: &'static str,
    /// Events a client emits, each acked.
    pub client: Vec<Event>,
    /// Events the server emits.
    pub server: Vec<Event>,
    /// Every schema the events refer to, by name.
    pub schemas: Vec<NamedSchema>,
}

impl Contract {
    /// A contract of `component` without events yet.
    pub fn new(component: &'static str) -> Contract {
        Contract {
            component,
            ..Contract::default()
        }
    }

    /// A client event taking `P`, acked with the fields of `A`.
    pub fn client<P: ToSchema, A: ToSchema>(
        mut self,
        name: &'static str,
        doc: &'static str,
    ) -> Contract {
        let payload = Some(self.named::<P>());
        let ack = Some(self.named::<A>());
        self.client.push(Event {
            name,
            doc,
            payload,
            ack,
        });
        self
    }

    /// A client event taking no argument, acked with the fields of `A`.
    pub fn client_bare<A: ToSchema>(mut self, name: &'static str, doc: &'static str) -> Contract {
        let ack = Some(self.named::<A>());
        self.client.push(Event {
            name,
            doc,
            payload: None,
            ack,
        });
        self
    }

    /// A client event taking `P`, acked `{ok:true}` alone.
    pub fn client_plain<P: ToSchema>(mut self, name: &'static str, doc: &'static str) -> Contract {
        let payload = Some(self.named::<P>());
        self.client.push(Event {
            name,
            doc,
            payload,
            ack: None,
        });
        self
    }

    /// A server event carrying `P`.
    pub fn server<P: ToSchema>(mut self, name: &'static str, doc: &'static str) -> Contract {
        let payload = Some(self.named::<P>());
        self.server.push(Event {
            name,
            doc,
            payload,
            ack: None,
        });
        self
    }

    /// Registers `T` (and what it refers to) and returns a reference to it.
    fn named<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name: Cow<'static, str> = T::name();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas.push((name.to_string(), T::schema()));
            T::schemas(&mut self.schemas);
        }
        RefOr::Ref(Ref::from_schema_name(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(ToSchema)]
    struct Inner {
        id: u64,
    }

    #[allow(dead_code)]
    #[derive(ToSchema)]
    struct Outer {
        inner: Inner,
        note: Option<String>,
    }

    #[test]
    fn an_event_registers_its_types_and_what_they_refer_to_once() {
        let contract = Contract::new("demo")
            .client::<Outer, Inner>("make", "makes one")
            .server::<Outer>("made", "one was made");
        let names: Vec<&str> = contract.schemas.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "Outer").count(), 1);
        assert_eq!(names.iter().filter(|n| **n == "Inner").count(), 1);
        assert_eq!(contract.client[0].name, "make");
        assert!(
            matches!(&contract.client[0].payload, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Outer"))
        );
        assert!(
            matches!(&contract.server[0].payload, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Outer"))
        );
    }
}
