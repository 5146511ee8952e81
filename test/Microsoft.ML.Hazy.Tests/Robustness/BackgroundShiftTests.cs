using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Robustness;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Robustness;

/// <summary>The background-shift generator's stated statistics, on stand-in 28×28 images (no data files needed).</summary>
public sealed class BackgroundShiftTests
{
    private sealed class Source
    {
        [KeyType(10)] public uint Label;
        [VectorType(784)] public float[] Features = Array.Empty<float>();
    }

    private static IDataView Images(MLContext ml, int rows)
    {
        var r = new Random(3);
        return ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new Source
        {
            // LoadFromEnumerable stores a key field's value v as the key v + 1: classes 0, 6 and 2.
            Label = (uint)(i % 5 == 0 ? 0 : i % 5 == 1 ? 6 : 2),
            Features = Enumerable.Range(0, 784).Select(j => j / 28 is > 4 and < 24 && j % 28 is > 6 and < 20 ? (float)(0.3 + 0.7 * r.NextDouble()) : 0f).ToArray(),
        }));
    }

    [TestCase(BackgroundShiftSplit.Train, 0.9)]
    [TestCase(BackgroundShiftSplit.InDistribution, 0.9)]
    [TestCase(BackgroundShiftSplit.Shifted, 0.1)]
    public void TheMarkerAndTheSiteAgreeWithTheLabelAtTheStatedRates(BackgroundShiftSplit split, double markerRate)
    {
        var ml = new MLContext(1);
        var options = new BackgroundShiftOptions { Seed = 4 };
        var rows = BackgroundShift.GenerateRows(Images(ml, 5000), split, options);
        Assert.That(rows.Count, Is.EqualTo(2000), "only the two classes' rows are kept");
        Assert.That(rows.Count(r => r.Label), Is.EqualTo(1000));
        // Binomial: n = 2000, sd ≤ 0.0112; 4 sd.
        double marker = rows.Count(r => r.Marker == r.Label) / (double)rows.Count;
        double site = rows.Count(r => r.Site == r.Label) / (double)rows.Count;
        Assert.That(marker, Is.EqualTo(markerRate).Within(0.045));
        Assert.That(site, Is.EqualTo(options.SiteAgreement).Within(0.045));
    }

    [Test]
    public void TheMasksCoverTheObjectAndBandAndTheMarkerLiesOutsideBoth()
    {
        var ml = new MLContext(1);
        var rows = BackgroundShift.GenerateRows(Images(ml, 200), BackgroundShiftSplit.Train, new BackgroundShiftOptions { Seed = 1 });
        int s = BackgroundShiftOptions.Defaults.CanvasSize;
        Assert.That(rows.Count, Is.EqualTo(80));
        foreach (var row in rows)
        {
            Assert.That(row.Features.Length, Is.EqualTo(s * s));
            Assert.That(row.LesionMask.Count(m => m), Is.EqualTo(19 * 13), "the object's own pixels: the stand-in's non-zero block");
            Assert.That(row.TaskMask.Count(m => m), Is.EqualTo(19 * 13 + 28 * BackgroundShift.BandWidth), "object and band");
            for (int i = 0; i < s * s; i++)
                Assert.That(!row.LesionMask[i] || row.TaskMask[i], "the lesion mask lies inside the task mask");
            for (int r = 1; r <= 4; r++)
            {
                for (int c = 1; c <= 4; c++)
                {
                    Assert.That(row.TaskMask[r * s + c], Is.False, "the marker lies outside the task mask");
                    Assert.That(row.Features[r * s + c], row.Marker ? Is.EqualTo(1f) : Is.LessThanOrEqualTo(0.1f));
                }
            }
        }
        var view = BackgroundShift.Generate(ml, Images(ml, 50), BackgroundShiftSplit.Shifted);
        Assert.That(view.Schema["TaskMask"].Type, Is.EqualTo(new VectorDataViewType(BooleanDataViewType.Instance, s * s)));
        Assert.That(view.Schema["Label"].Type, Is.EqualTo(BooleanDataViewType.Instance));
    }
}
