//! Tests of the safetensors reader and writer: malformed headers are errors, streaming writes
//! read back, sharded checkpoints go through their index.

use super::*;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("apr-st-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file image: the given header JSON text and `data_len` data bytes.
fn image(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend((0..data_len).map(|i| i as u8));
    v
}

fn parse(buf: &[u8]) -> Result<(Vec<StTensor>, BTreeMap<String, String>)> {
    parse_header(buf, Path::new("t.safetensors"))
}

#[test]
fn good_header_parses() {
    let h = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let (t, m) = parse(&image(h, 12)).unwrap();
    assert_eq!(m["format"], "pt");
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].name, "a", "file order");
    assert_eq!(t[1].end - t[1].start, 4);
}

#[test]
fn malformed_headers_are_errors() {
    let cases: &[(&str, Vec<u8>, &str)] = &[
        ("short", vec![1, 2, 3], "no header length"),
        (
            "huge length",
            u64::MAX.to_le_bytes().to_vec(),
            "header length",
        ),
        (
            "truncated header",
            image("{}", 0)[..9].to_vec(),
            "runs past",
        ),
        ("bad json", image("{\"a\":", 0), "not JSON"),
        ("not an object", image("[1,2]", 0), "not a JSON object"),
        (
            "unknown dtype",
            image(
                r#"{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}"#,
                4,
            ),
            "unknown dtype",
        ),
        (
            "out of range",
            image(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                8,
            ),
            "outside",
        ),
        (
            "reversed",
            image(
                r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#,
                8,
            ),
            "outside",
        ),
        (
            "size mismatch",
            image(
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
            ),
            "needs 12 bytes",
        ),
        (
            "overlap",
            image(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                12,
            ),
            "overlap",
        ),
        (
            "bad shape",
            image(
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                4,
            ),
            "bad dimension",
        ),
        (
            "overflow",
            image(
                r#"{"a":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,4]}}"#,
                4,
            ),
            "overflows",
        ),
        (
            "bad metadata",
            image(r#"{"__metadata__":{"k":1}}"#, 0),
            "not a string",
        ),
    ];
    for (what, buf, want) in cases {
        let e = parse(buf).expect_err(what).to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
}

#[test]
fn truncated_file_is_an_error() {
    let d = tmpdir("trunc");
    let p = d.join("model.safetensors");
    let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    std::fs::write(&p, &image(h, 16)[..30]).unwrap();
    assert!(SafetensorsFile::open(&p).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn streaming_write_reads_back_sharded_and_single() {
    let a: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let b: Vec<u8> = (0..16u8).collect(); // 8 f16 values
    let c: Vec<f32> = (0..10).map(|i| 1.0 / (i as f32 + 1.0)).collect();
    let specs = vec![
        StSpec {
            name: "a".into(),
            dtype: GgmlType::F32,
            shape: vec![4, 6],
        },
        StSpec {
            name: "b".into(),
            dtype: GgmlType::F16,
            shape: vec![8],
        },
        StSpec {
            name: "c".into(),
            dtype: GgmlType::F32,
            shape: vec![10],
        },
    ];
    for (limit, shards) in [(1 << 20, 1usize), (100, 2)] {
        let d = tmpdir(&format!("w{limit}"));
        let meta = vec![("format".to_string(), "pt".to_string())];
        let mut w = SafetensorsWriter::create(&d, specs.clone(), meta, limit).unwrap();
        let ab = f32_bytes(&a);
        w.write("a", &ab[..40]).unwrap();
        w.write("a", &ab[40..]).unwrap();
        assert!(w.write("c", &[0; 4]).is_err(), "b comes next");
        w.write("b", &b).unwrap();
        w.write("c", &f32_bytes(&c)).unwrap();
        let files = w.finish().unwrap();
        assert_eq!(files.len(), if shards == 1 { 1 } else { shards + 1 });
        let paths = checkpoint_files(&d).unwrap();
        assert_eq!(paths.len(), shards);
        let mut got = BTreeMap::new();
        for p in &paths {
            let f = SafetensorsFile::open(p).unwrap();
            assert_eq!(f.metadata["format"], "pt");
            assert_eq!((f.mmap.len() - 8) % 8, 0, "header padded to 8");
            for t in &f.tensors {
                got.insert(t.name.clone(), (t.shape.clone(), f.data(t).to_vec()));
            }
        }
        assert_eq!(got["a"], (vec![4, 6], ab.clone()));
        assert_eq!(got["b"], (vec![8], b.clone()));
        assert_eq!(got["c"], (vec![10], f32_bytes(&c)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn incomplete_write_leaves_no_file() {
    let d = tmpdir("inc");
    let specs = vec![StSpec {
        name: "a".into(),
        dtype: GgmlType::F32,
        shape: vec![4],
    }];
    let mut w = SafetensorsWriter::create(&d, specs, vec![], 1 << 20).unwrap();
    w.write("a", &[0; 8]).unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("incomplete"));
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn index_with_paths_is_rejected() {
    let d = tmpdir("idx");
    std::fs::write(
        d.join(INDEX_FILE),
        r#"{"weight_map":{"a":"../etc/passwd"}}"#,
    )
    .unwrap();
    assert!(checkpoint_files(&d).is_err());
    std::fs::write(d.join(INDEX_FILE), "{bad").unwrap();
    assert!(checkpoint_files(&d).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}
