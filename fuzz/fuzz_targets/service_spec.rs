//! Service specs as the control API checks them before `service create` or `service update`
//! stores one: a whole spec decoded from bincode (as it travels in a control frame), and a
//! valid spec whose user-typed strings (name, image, arguments, environment, labels,
//! constraints, preferences) come from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarm_actors::model::ServiceSpec;
use swarm_node_fuzz::validate::{env_key, validate_env, validate_name, validate_spec};
use swarm_node_fuzz::{pieces, spec_template};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let config =
            bincode::config::standard().with_limit::<{ swarm_actors::wire::FRAME_BYTES_MAX }>();
        if let Ok((spec, _)) = bincode::serde::decode_from_slice::<ServiceSpec, _>(rest, config) {
            let _ = validate_spec(&spec);
        }
        return;
    }
    let mut spec = spec_template();
    for (i, piece) in pieces(rest).enumerate().take(32) {
        let text = String::from_utf8_lossy(piece).into_owned();
        let _ = validate_name(&text);
        if validate_env(&text).is_ok() {
            assert!(!env_key(&text).is_empty(), "an accepted entry has a key");
        }
        match i % 7 {
            0 => spec.name = text,
            1 => spec.task.image = text,
            2 => spec.task.args.push(text),
            3 => spec.task.env.push(text),
            4 => {
                let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                spec.labels.insert(k.to_string(), v.to_string());
            }
            5 => spec.task.placement.constraints.push(text),
            _ => spec.task.placement.preferences.push(text),
        }
    }
    let _ = validate_spec(&spec);
});
