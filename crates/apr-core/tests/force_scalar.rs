//! `force_scalar` switches the process to the reference kernels and back (own test binary,
//! since the switch is process-wide).

use apr_core::quant::{force_scalar, kernel_name, quantize_row_q8_0, vec_dot, GgmlType};

#[test]
fn force_scalar_switches_kernels_and_results_agree() {
    let x: Vec<f32> = (0..256)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    let mut q = vec![0u8; GgmlType::Q8_0.bytes_for(256).unwrap()];
    quantize_row_q8_0(&x, &mut q).unwrap();
    let fast = vec_dot(GgmlType::Q8_0, 256, &q, &q);
    force_scalar(true);
    assert_eq!(kernel_name(), "scalar");
    let slow = vec_dot(GgmlType::Q8_0, 256, &q, &q);
    force_scalar(false);
    assert!((fast - slow).abs() <= 1e-5 * slow.abs(), "{fast} vs {slow}");
    assert!(slow > 0.0);
}
