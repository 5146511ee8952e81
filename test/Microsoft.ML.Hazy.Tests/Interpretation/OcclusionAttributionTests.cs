using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>Occlusion: closed forms on linear models (a window removes its features' contributions w_j x_j).</summary>
public class OcclusionAttributionTests
{
    [Test]
    public void OneByOneWindowOnALinearModelIsWeightTimesInputExactly()
    {
        // Small integers: every score is exact in float, so the differences are too.
        double[] w = [2, -1, 3, 0, 5, -4];
        var model = new LinearScore(w, 7);
        float[] x = [1, 2, -3, 4, 0, 2, /* row 2 */ -1, 1, 1, 1, 2, -2];
        var occlusion = new OcclusionAttribution(model, new OcclusionAttribution.Options { Shape = [2, 3], WindowShape = [1, 1], BatchSize = 5 });
        Assert.That(occlusion.WindowCount, Is.EqualTo(6));
        var a = occlusion.Attribute(x, 2, [0, 0]);
        Assert.That(a, Is.EqualTo(x.Select((v, i) => (float)(v * w[i % 6])).ToArray()));
    }

    [Test]
    public void WindowsAverageOverTheWindowsCoveringAFeatureAndClipAtTheEdge()
    {
        double[] w = [1, 2, 3, 4, 5];
        var model = new LinearScore(w);
        float[] x = [1, 1, 1, 1, 1];
        // Stride 1, window 2: windows {0,1} {1,2} {2,3} {3,4}; c = w.
        var a = new OcclusionAttribution(model, new OcclusionAttribution.Options { WindowShape = [2] }).Attribute(x, 1, [0]);
        Assert.That(a, Is.EqualTo(new float[] { 3, (3 + 5) / 2f, (5 + 7) / 2f, (7 + 9) / 2f, 9 }));
        // Stride 2, window 2 over 5: ⌈3/2⌉ + 1 = 3 windows {0,1} {2,3} {4} (the last clipped).
        var strided = new OcclusionAttribution(model, new OcclusionAttribution.Options { WindowShape = [2], Strides = [2] });
        Assert.That(strided.WindowCount, Is.EqualTo(3));
        Assert.That(strided.Attribute(x, 1, [0]), Is.EqualTo(new float[] { 3, 3, 7, 7, 5 }));
    }

    [Test]
    public void TwoDimensionalWindowsAndAReplacementValue()
    {
        // 3×3 image, 2×2 window, stride 1: four windows; the centre is in all four, corners in one.
        var w = Enumerable.Range(1, 9).Select(i => (double)i).ToArray();
        var model = new LinearScore(w);
        var x = new float[9];
        Array.Fill(x, 2f);
        var a = new OcclusionAttribution(model, new OcclusionAttribution.Options { Shape = [3, 3], WindowShape = [2, 2], ReplacementValue = 1 }).Attribute(x, 1, [0]);
        // Replacing 2 by 1 removes w_j per covered feature: window sums 1+2+4+5=12, 2+3+5+6=16, 4+5+7+8=24, 5+6+8+9=28.
        Assert.That(a[0], Is.EqualTo(12));
        Assert.That(a[4], Is.EqualTo((12 + 16 + 24 + 28) / 4f));
        Assert.That(a[1], Is.EqualTo((12 + 16) / 2f));
        Assert.That(a[8], Is.EqualTo(28));
    }

    [Test]
    public void TargetPicksTheOutput()
    {
        var model = new LinearScore([[1.0, 2], [3.0, 4]]);
        var a = new OcclusionAttribution(model).Attribute(new float[] { 1, 1, 1, 1 }, 2, [1, 0]);
        Assert.That(a, Is.EqualTo(new float[] { 3, 4, 1, 2 }));
    }

    [Test]
    public void OnAStockSdcaModelOneByOneOcclusionIsWeightTimesInput()
    {
        var (ml, model, w, _, x) = SdcaFixture.Train();
        var score = new TransformerScoreFunction(model, "Features", SdcaFixture.Dimensions);
        var a = new OcclusionAttribution(score).Attribute(x, 5, new int[5]);
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i], Is.EqualTo(w[i % w.Length] * x[i]).Within(1e-4), $"feature {i}");
    }

    [Test]
    public void BadInputIsRejectedWithWhatWasExpected()
    {
        var model = new LinearScore([[1.0, 2, 3, 4, 5, 6]]);
        var shape = Assert.Throws<ArgumentException>(() => new OcclusionAttribution(model, new OcclusionAttribution.Options { Shape = [2, 2] }))!;
        Assert.That(shape.Message, Does.Contain("[2, 2]").And.Contain("6"));
        var stride = Assert.Throws<ArgumentException>(() => new OcclusionAttribution(model, new OcclusionAttribution.Options { WindowShape = [2], Strides = [3] }))!;
        Assert.That(stride.Message, Does.Contain("Strides[0] is 3"));
        Assert.Throws<ArgumentException>(() => new OcclusionAttribution(model, new OcclusionAttribution.Options { Shape = [2, 3], WindowShape = [3, 1] }));
        Assert.Throws<ArgumentException>(() => new OcclusionAttribution(model, new OcclusionAttribution.Options { Shape = [2, 3], WindowShape = [1] }));
        var occlusion = new OcclusionAttribution(model);
        var size = Assert.Throws<ArgumentException>(() => occlusion.Attribute(new float[7], 1, [0]))!;
        Assert.That(size.Message, Does.Contain("7").And.Contain("1 × 6"));
        var target = Assert.Throws<ArgumentOutOfRangeException>(() => occlusion.Attribute(new float[6], 1, [1]))!;
        Assert.That(target.Message, Does.Contain("expected 0 to 0"));
        Assert.Throws<ArgumentException>(() => occlusion.Attribute(new float[12], 2, [0]));
    }
}
