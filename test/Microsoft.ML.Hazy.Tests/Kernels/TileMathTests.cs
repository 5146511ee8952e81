using System.Runtime.Intrinsics;
using Microsoft.ML.Hazy.Kernels;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Kernels;

public sealed class TileMathTests
{
    // The kernel's float exponential against the float64 exponential rounded to float: within 1 ulp on the softmax
    // range and on moderate positive arguments, 0 for −∞ and far below −87 (no denormal noise beyond −104), +∞ above 88.8.
    [Test]
    public void ExponentialIsWithinOneUlpAndSaturatesCleanly()
    {
        var inputs = new List<float>();
        for (double x = -87; x <= 88; x += 0.000731)
            inputs.Add((float)x);
        inputs.AddRange([0f, -0f, 1e-9f, -1e-9f, 0.34657359f, -0.34657359f, 88.5f]);
        while (inputs.Count % 16 != 0)
            inputs.Add(-1f);
        var x512 = new float[inputs.Count];
        var x256 = new float[inputs.Count];
        var a = inputs.ToArray();
        for (int i = 0; i < a.Length; i += 16)
        {
            if (Vector512.IsHardwareAccelerated)
                TileMath.Exp(Vector512.Create(a, i)).CopyTo(x512, i);
            if (Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported)
            {
                TileMath.Exp(Vector256.Create(a, i)).CopyTo(x256, i);
                TileMath.Exp(Vector256.Create(a, i + 8)).CopyTo(x256, i + 8);
            }
        }
        foreach (var (name, got, active) in new[] { ("AVX-512", x512, Vector512.IsHardwareAccelerated), ("AVX2", x256, Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported) })
        {
            if (!active)
                continue;
            int worst = 0;
            for (int i = 0; i < a.Length; i++)
            {
                float exact = (float)Math.Exp(a[i]);
                if (exact < 1.2e-38f)
                    continue; // the AVX2 form flushes below the smallest normal float by design
                int ulps = Math.Abs(BitConverter.SingleToInt32Bits(got[i]) - BitConverter.SingleToInt32Bits(exact));
                worst = Math.Max(worst, ulps);
            }
            Assert.That(worst, Is.LessThanOrEqualTo(1), $"{name}: worst error {worst} ulp");
        }
        if (Vector512.IsHardwareAccelerated)
        {
            var special = TileMath.Exp(Vector512.Create(float.NegativeInfinity, -104f, -200f, -1e30f, 89f, 1e30f, float.PositiveInfinity, 0f, 0, 0, 0, 0, 0, 0, 0, 0));
            Assert.That(new[] { special[0], special[1], special[2], special[3] }, Is.All.EqualTo(0f));
            Assert.That(new[] { special[4], special[5], special[6] }, Is.All.EqualTo(float.PositiveInfinity));
            Assert.That(special[7], Is.EqualTo(1f));
        }
    }
}
