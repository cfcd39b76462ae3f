//! The bounds a payload's schema states beyond its shape (lengths, ranges, patterns),
//! checked on decoding ([`crate::Payload::check`]) so that decoding accepts exactly what
//! the schema accepts. Each check names the field and the bound, like a schema
//! validator would.

/// `value` has `min` to `max` characters (Unicode scalar values, as JSON Schema's
/// `minLength`/`maxLength` count them).
pub(crate) fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let count = value.chars().count();
    if (min..=max).contains(&count) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be {min} to {max} characters, not {count}"
        ))
    }
}

/// `items` has `min` to `max` elements.
pub(crate) fn items<T>(field: &str, items: &[T], min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&items.len()) {
        Ok(())
    } else {
        Err(format!(
            "{field} must have {min} to {max} elements, not {}",
            items.len()
        ))
    }
}

/// `value` is `min` to `max`.
pub(crate) fn range(field: &str, value: u32, min: u32, max: u32) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("{field} must be {min} to {max}, not {value}"))
    }
}

/// `value` is `min` to `max` bytes, each one `allowed` (the schema's pattern
/// `^[…]{min,max}$` over ASCII classes).
pub(crate) fn ascii(
    field: &str,
    value: &str,
    (min, max): (usize, usize),
    allowed: fn(u8) -> bool,
    pattern: &str,
) -> Result<(), String> {
    if (min..=max).contains(&value.len()) && value.bytes().all(allowed) {
        Ok(())
    } else {
        Err(format!("{field} must match {pattern}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_count_characters_and_name_the_field() {
        assert!(length("name", "é", 1, 1).is_ok());
        assert_eq!(
            length("name", "", 1, 2),
            Err("name must be 1 to 2 characters, not 0".to_owned())
        );
        assert!(items("items", &[1, 2, 3], 1, 2).is_err());
        assert!(range("quantity", 0, 1, 10).is_err());
        assert!(
            ascii(
                "code",
                "AB",
                (2, 2),
                |b| b.is_ascii_uppercase(),
                "^[A-Z]{2}$"
            )
            .is_ok()
        );
        assert!(
            ascii(
                "code",
                "Ab",
                (2, 2),
                |b| b.is_ascii_uppercase(),
                "^[A-Z]{2}$"
            )
            .is_err()
        );
    }
}
