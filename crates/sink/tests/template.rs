use proptest::prelude::*;
use relay_sink::{Attr, Template, TemplateError};
use relay_testkit::fixtures;

#[test]
fn renders_defaults() {
    let env = fixtures::sample("post.create", "2244994945");
    assert_eq!(
        Template::parse("x.activity.{type}").unwrap().render(&env),
        "x.activity.post.create"
    );
    assert_eq!(
        Template::parse("{subject}").unwrap().render(&env),
        "2244994945"
    );
    assert_eq!(
        Template::parse("x.activity.{subject}.{type}")
            .unwrap()
            .render(&env),
        "x.activity.2244994945.post.create"
    );
    assert_eq!(
        Template::parse("{ingress}/{source}/{actorid}/{objectid}")
            .unwrap()
            .render(&env),
        "webhook//x/account-activity/webhook/prod-app/2244994945/1924465506158878979"
    );
}

#[test]
fn missing_or_empty_attribute_renders_underscore() {
    let mut env = fixtures::sample("follow.follow", "1");
    env.targetid = None;
    env.actorid = Some(String::new());
    let t = Template::parse("a.{targetid}.{actorid}.b").unwrap();
    assert_eq!(t.render(&env), "a._._.b");
}

#[test]
fn errors_name_the_problem() {
    match Template::parse("x.{typo}") {
        Err(TemplateError::UnknownPlaceholder { name, pos, .. }) => {
            assert_eq!(name, "typo");
            assert_eq!(pos, 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Template::parse("x.{type"),
        Err(TemplateError::Unclosed { pos: 2, .. })
    ));
    assert!(matches!(
        Template::parse("x.type}"),
        Err(TemplateError::Unmatched { pos: 6, .. })
    ));
    assert!(matches!(
        Template::parse("{{type}}"),
        Err(TemplateError::Unclosed { pos: 0, .. })
    ));
    assert!(matches!(
        Template::parse("{}"),
        Err(TemplateError::UnknownPlaceholder { .. })
    ));
    assert!(matches!(
        Template::parse("{Type}"),
        Err(TemplateError::UnknownPlaceholder { .. })
    ));
    let msg = Template::parse("x.{typo}").unwrap_err().to_string();
    assert!(msg.contains("{typo}") && msg.contains("{subject}"), "{msg}");
}

#[test]
fn introspection_and_serde() {
    let t = Template::parse("x.{subject}.{type}").unwrap();
    assert_eq!(
        t.attrs().collect::<Vec<_>>(),
        vec![Attr::Subject, Attr::Type]
    );
    assert_eq!(t.literals().collect::<Vec<_>>(), vec!["x.", "."]);
    assert!(!t.is_constant());
    assert!(Template::parse("x.activity.deadletter")
        .unwrap()
        .is_constant());
    assert_eq!(t.to_string(), "x.{subject}.{type}");

    #[derive(serde::Deserialize)]
    struct Cfg {
        topic: Template,
    }
    let cfg: Cfg = serde_json::from_str(r#"{"topic":"t.{type}"}"#).unwrap();
    assert_eq!(cfg.topic.as_str(), "t.{type}");
    let err = serde_json::from_str::<Cfg>(r#"{"topic":"t.{nope}"}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn render_with_escapes_values_only() {
    let env = fixtures::sample("post.create", "a b");
    let t = Template::parse("x y.{subject}").unwrap();
    let out = t.render_with(&env, |v, out| out.push_str(&v.replace(' ', "_")));
    assert_eq!(out, "x y.a_b");
}

fn template_strategy() -> impl Strategy<Value = (String, String)> {
    // (template, expected rendering with lookup value "<name>")
    let piece = prop_oneof![
        "[a-z0-9._-]{0,6}".prop_map(|s| (s.clone(), s)),
        prop::sample::select(Attr::ALL.to_vec())
            .prop_map(|a| (format!("{{{}}}", a.name()), format!("<{}>", a.name()))),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| {
        let t: String = v.iter().map(|(t, _)| t.as_str()).collect();
        let r: String = v.iter().map(|(_, r)| r.as_str()).collect();
        (t, r)
    })
}

proptest! {
    #[test]
    fn any_string_parses_or_errors_and_renders(s in "\\PC*") {
        let env = fixtures::sample("post.create", "2244994945");
        if let Ok(t) = Template::parse(&s) {
            let _ = t.render(&env);
            prop_assert_eq!(t.as_str(), s.as_str());
        }
    }

    #[test]
    fn brace_heavy_strings_never_panic(s in "[{}a-z_.]{0,24}") {
        let env = fixtures::sample("like.create", "_");
        match Template::parse(&s) {
            Ok(t) => { let _ = t.render(&env); }
            Err(e) => { let _ = e.to_string(); }
        }
    }

    #[test]
    fn valid_templates_render_as_expected((t, expected) in template_strategy()) {
        let tpl = Template::parse(&t).unwrap();
        let names: Vec<String> = Attr::ALL.iter().map(|a| format!("<{}>", a.name())).collect();
        let out = tpl.render_lookup(|a| {
            let i = Attr::ALL.iter().position(|x| *x == a).unwrap();
            Some(names[i].as_str())
        });
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn brace_free_strings_are_literal(s in "[^{}]*") {
        let tpl = Template::parse(&s).unwrap();
        prop_assert!(tpl.is_constant());
        let env = fixtures::sample("post.create", "1");
        prop_assert_eq!(tpl.render(&env), s);
    }
}
