//! Hostile-guest corpus: a well-formed component of another world (it exports `greet`, not
//! `evaluate` and `describe`). The host must refuse to load it, with a clear error.

wit_bindgen::generate!({
    inline: "
        package hostile:other;

        world other {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}

export!(Other);
