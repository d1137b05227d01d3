//! A JSON delta body (`{"upserts":[{col: value}], "deletes":[{key: value}]}`) read in one pass
//! into row-major cells of the table's columns, with strings borrowed from the body.
//!
//! Why not `serde_json::Value` rows: a map and a heap string per member name and string value
//! for every row made building the tree four times the cost of reading the JSON (a 10 000-row
//! body: ~3 ms to tokenize, 12–20 ms to build `Value`s). Here each member goes straight to its
//! column's cell, found by name while the body is read; nothing is allocated per row but the
//! row's cells, and nothing per string unless it holds escapes.

use std::borrow::Cow;
use std::collections::HashMap;

use arrow::datatypes::Schema;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use strata_shared::{Error, Result};

/// One member's value: a string (borrowed unless it holds escapes), or any other JSON value
/// (numbers, booleans and null need no allocation).
pub(super) enum Cell<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

impl Cell<'_> {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) => Some(s),
            Cell::Other(_) => None,
        }
    }

    /// The value if it is not a string.
    pub(super) fn other(&self) -> Option<&Value> {
        match self {
            Cell::Str(_) => None,
            Cell::Other(v) => Some(v),
        }
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self, Cell::Other(Value::Null))
    }
}

/// As JSON text.
impl std::fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Str(s) => write!(f, "{}", Value::String(s.to_string())),
            Cell::Other(v) => write!(f, "{v}"),
        }
    }
}

/// A body's rows: `upserts[row * width + column]` is the row's member of that column, if it
/// names it (a name given twice: the last value, as a JSON object reads); `deletes` likewise.
pub(super) struct JsonRows<'a> {
    pub upserts: Vec<Option<Cell<'a>>>,
    pub deletes: Vec<Option<Cell<'a>>>,
}

/// Reads `body` for a table of `schema`. A member naming no column is refused with the row
/// (`upserts[3]: unknown column "x"`); anything else that is not a body of this shape is an
/// "invalid JSON body" with serde_json's description and position.
pub(super) fn read<'a>(body: &'a [u8], schema: &Schema) -> Result<JsonRows<'a>> {
    // serde would also read a map from an array (`[[…], […]]`); only an object is a body.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(invalid(
            "invalid JSON body: expected an object {\"upserts\": […], \"deletes\": […]}",
        ));
    }
    let columns = Columns {
        schema,
        by_name: schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().as_str(), i))
            .collect(),
    };
    let mut rows = JsonRows {
        upserts: Vec::new(),
        deletes: Vec::new(),
    };
    let mut refusal = None;
    let mut json = serde_json::Deserializer::from_slice(body);
    let read = BodySeed {
        columns: &columns,
        rows: &mut rows,
        refusal: &mut refusal,
    }
    .deserialize(&mut json)
    .and_then(|()| json.end());
    match (read, refusal) {
        (Ok(()), _) => Ok(rows),
        (Err(_), Some(refusal)) => Err(refusal),
        (Err(e), None) => Err(invalid(format!("invalid JSON body: {e}"))),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(message.into())
}

struct Columns<'s> {
    schema: &'s Schema,
    by_name: HashMap<&'s str, usize>,
}

impl Columns<'_> {
    /// The column `name` given as a row's `position`th member. Clients usually send the
    /// columns in schema order: then one comparison, no hashing.
    fn find(&self, name: &str, position: usize) -> Option<usize> {
        match self.schema.fields().get(position) {
            Some(f) if f.name() == name => Some(position),
            _ => self.by_name.get(name).copied(),
        }
    }
}

/// The top-level object: `upserts` and `deletes`, each at most once, nothing else.
struct BodySeed<'c, 's, 'a> {
    columns: &'c Columns<'s>,
    rows: &'c mut JsonRows<'a>,
    /// A refusal of ours (not a JSON syntax error), with the message the client gets.
    refusal: &'c mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object {\"upserts\": […], \"deletes\": […]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        const FIELDS: &[&str] = &["upserts", "deletes"];
        let (mut upserts, mut deletes) = (false, false);
        while let Some(field) = map.next_key::<Cow<'_, str>>()? {
            let (list, cells, seen) = match field.as_ref() {
                "upserts" => ("upserts", &mut self.rows.upserts, &mut upserts),
                "deletes" => ("deletes", &mut self.rows.deletes, &mut deletes),
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            };
            if std::mem::replace(seen, true) {
                return Err(de::Error::duplicate_field(list));
            }
            map.next_value_seed(ListSeed {
                columns: self.columns,
                list,
                cells,
                refusal: &mut *self.refusal,
            })?;
        }
        Ok(())
    }
}

/// `upserts` or `deletes`: an array of row objects.
struct ListSeed<'c, 's, 'a> {
    columns: &'c Columns<'s>,
    list: &'static str,
    cells: &'c mut Vec<Option<Cell<'a>>>,
    refusal: &'c mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of row objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(RowSeed {
                columns: self.columns,
                label: (self.list, index),
                cells: &mut *self.cells,
                refusal: &mut *self.refusal,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
}

/// One row object, its members written to the row's cells.
struct RowSeed<'c, 's, 'a> {
    columns: &'c Columns<'s>,
    label: (&'static str, usize),
    cells: &'c mut Vec<Option<Cell<'a>>>,
    refusal: &'c mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a row object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let width = self.columns.schema.fields().len();
        let start = self.cells.len();
        self.cells.resize_with(start + width, || None);
        let mut position = 0;
        while let Some(name) = map.next_key::<Cell<'de>>()? {
            let Cell::Str(name) = name else {
                return Err(de::Error::custom("a member name is not a string"));
            };
            let Some(column) = self.columns.find(&name, position) else {
                let (list, index) = self.label;
                *self.refusal = Some(invalid(format!("{list}[{index}]: unknown column {name:?}")));
                return Err(de::Error::custom("unknown column"));
            };
            self.cells[start + column] = Some(map.next_value()?);
            position += 1;
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct CellVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for CellVisitor<'a> {
            type Value = Cell<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Str(Cow::Owned(s)))
            }
            fn visit_bool<E>(self, b: bool) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, i: i64) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Other(Value::from(i)))
            }
            fn visit_u64<E>(self, u: u64) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Other(Value::from(u)))
            }
            fn visit_f64<E>(self, f: f64) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Other(Value::from(f)))
            }
            fn visit_unit<E>(self) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Other(Value::Null))
            }
            fn visit_none<E>(self) -> std::result::Result<Cell<'a>, E> {
                Ok(Cell::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                seq: A,
            ) -> std::result::Result<Cell<'a>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Cell::Other)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Cell<'a>, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Cell::Other)
            }
        }
        d.deserialize_any(CellVisitor(std::marker::PhantomData))
    }
}
