using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Slicing;
using Microsoft.ML.Hazy.Tests.Conformance;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Slicing;

/// <summary>The Domino estimator as an ML.NET component: columns, scoring through ONNX, persistence and bad input.</summary>
public class DominoEstimatorTests
{
    private static DominoEstimator BinarySlicer(MLContext ml, int? pca = null, bool useTargets = true) =>
        ml.Hazy().Slicing.Domino(new DominoEstimator.Options
        {
            PredictionColumnName = "Probability",
            NumberOfComponents = 8,
            NumberOfSlices = 3,
            PcaComponents = pca,
            Seed = 1,
            UseLabelsAndPredictionsWhenScoring = useTargets,
        });

    private static float[][] ReadVectors(IDataView data, string column) =>
        data.GetColumn<VBuffer<float>>(column).Select(v => v.DenseValues().ToArray()).ToArray();

    private static uint[] ReadKeys(IDataView data, string column) => data.GetColumn<uint>(column).ToArray();

    [Test]
    public void OnnxScoringEqualsTheMixturePosteriorAndSliceIsItsArgmax()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.PlantedSlice(600, 21).ToDataView(ml);
        var model = BinarySlicer(ml, pca: 6).Fit(data);
        var scored = model.Transform(data);
        var onnx = ReadVectors(scored, "SliceProbabilities");
        var managed = model.PredictSliceProbabilities(data);
        var slice = ReadKeys(scored, "Slice");
        Assert.That(onnx.Length, Is.EqualTo(600));
        for (int i = 0; i < onnx.Length; i++)
        {
            Assert.That(onnx[i], Is.EqualTo(managed[i]).Within(1e-6), $"row {i}");
            // The key is the argmax; where probabilities tie to rounding, the chosen slice is one of the largest.
            Assert.That(managed[i][slice[i] - 1], Is.EqualTo(managed[i].Max()).Within(1e-12 + 1e-9 * managed[i].Max()), $"row {i}");
        }
        var sliceType = (KeyDataViewType)scored.Schema["Slice"].Type;
        Assert.That(sliceType.Count, Is.EqualTo(3UL));
        Assert.That(model.TrainingReport.Slices, Has.Count.EqualTo(3));
    }

    [Test]
    public void SaveLoadInFreshContextGivesIdenticalOutputsWithoutHazyTransformers()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.Multiclass(ml, 500, 3);
        var model = ml.Hazy().Slicing.Domino(numberOfSlices: 4, numberOfComponents: 12, pcaComponents: 8).Fit(data);
        var path = Path.Combine(Path.GetTempPath(), $"hazy-domino-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            var loaded = new MLContext(7).Model.Load(path, out var schema);
            Assert.That(schema.Select(c => c.Name), Is.EqualTo(data.Schema.Select(c => c.Name)));
            foreach (var t in ConformanceHelpers.Flatten(loaded))
                Assert.That(t.GetType().Assembly, Is.Not.EqualTo(typeof(DominoTransformer).Assembly), $"loaded transformer {t.GetType()}");
            var expected = model.Transform(data);
            var actual = loaded.Transform(data);
            Assert.That(ReadVectors(actual, "SliceProbabilities"), Is.EqualTo(ReadVectors(expected, "SliceProbabilities")));
            Assert.That(ReadKeys(actual, "Slice"), Is.EqualTo(ReadKeys(expected, "Slice")));
            Assert.That(actual.Schema["Slice"].Type.ToString(), Is.EqualTo(expected.Schema["Slice"].Type.ToString()));
            Assert.That(actual.Schema.Select(c => c.Name).Where(n => n.StartsWith("__", StringComparison.Ordinal)), Is.Empty, "temporary columns are dropped");

        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void LoadedModelServesAPredictionEngine()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.PlantedSlice(400, 13).ToDataView(ml);
        var model = BinarySlicer(ml, pca: 5).Fit(data);
        using var stream = new MemoryStream();
        ml.Model.Save(model, data.Schema, stream);
        stream.Position = 0;
        var loaded = new MLContext(2).Model.Load(stream, out var schema);
        var engine = new MLContext(3).Model.CreatePredictionEngine<SlicingTestData.BinaryRow, SlicedRow>(loaded, inputSchema: schema);
        var rows = ml.Data.CreateEnumerable<SlicingTestData.BinaryRow>(data, reuseRowObject: false).ToArray();
        var batch = ReadVectors(model.Transform(data), "SliceProbabilities");
        var keys = ReadKeys(model.Transform(data), "Slice");
        for (int i = 0; i < rows.Length; i++)
        {
            var single = engine.Predict(rows[i]);
            Assert.That(single.SliceProbabilities, Is.EqualTo(batch[i]), $"row {i}");
            Assert.That(single.Slice, Is.EqualTo(keys[i]), $"row {i}");
        }
    }

    [Test]
    public void SliceKeyMapsBackToTheSliceIndex()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.Multiclass(ml, 300, 4);
        var model = ml.Hazy().Slicing.Domino(numberOfSlices: 3, numberOfComponents: 9, pcaComponents: null).Fit(data);
        var mapped = ml.Transforms.Conversion.MapKeyToValue("SliceIndex", "Slice").Fit(model.Transform(data)).Transform(model.Transform(data));
        var index = mapped.GetColumn<string>("SliceIndex").ToArray();
        var keys = ReadKeys(mapped, "Slice");
        Assert.That(index, Is.EqualTo(keys.Select(k => (k - 1).ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray()));
        Assert.That(keys.Distinct().Count(), Is.GreaterThan(1));
    }

    [Test]
    public void SchemaBeforeFitEqualsFittedSchema()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.PlantedSlice(200, 2).ToDataView(ml);
        var estimator = BinarySlicer(ml);
        var predicted = estimator.GetOutputSchema(ConformanceHelpers.ShapeOf(data.Schema));
        var actual = estimator.Fit(data).GetOutputSchema(data.Schema);
        Assert.That(actual.Where(c => !c.IsHidden).Select(c => c.Name), Is.EquivalentTo(predicted.Select(c => c.Name)));
        Assert.That(predicted.First(c => c.Name == "Slice").IsKey, Is.True);
        Assert.That(predicted.First(c => c.Name == "SliceProbabilities").Kind, Is.EqualTo(SchemaShape.Column.VectorKind.Vector));
    }

    [Test]
    public void NumericClassIndexLabelScoresLikeTheKeyLabel()
    {
        var ml = new MLContext(1);
        var keyed = SlicingTestData.Multiclass(ml, 400, 5);
        var numeric = SlicingTestData.Multiclass(ml, 400, 5, numericLabel: true);
        Assert.That(numeric.Schema["Label"].Type, Is.EqualTo(NumberDataViewType.Single));
        var estimator = ml.Hazy().Slicing.Domino(new DominoEstimator.Options { NumberOfSlices = 3, NumberOfComponents = 9, PcaComponents = 6, Seed = 3 });
        var fromKey = estimator.Fit(keyed);
        var fromNumber = estimator.Fit(numeric);
        Assert.That(fromNumber.ClassNames, Is.EqualTo(new[] { "0", "1", "2" }));
        Assert.That(fromNumber.Model.LowerBound, Is.EqualTo(fromKey.Model.LowerBound));
        var a = ReadVectors(fromNumber.Transform(numeric), "SliceProbabilities");
        var b = ReadVectors(fromKey.Transform(keyed), "SliceProbabilities");
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i], Is.EqualTo(b[i]).Within(1e-6), $"row {i}");
    }

    [Test]
    public void EmbeddingAloneScoringNeedsNoLabelColumn()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.PlantedSlice(300, 8).ToDataView(ml);
        var model = BinarySlicer(ml, useTargets: false).Fit(data);
        var unlabelled = ml.Transforms.DropColumns("Label", "Probability").Fit(data).Transform(data);
        var onnx = ReadVectors(model.Transform(unlabelled), "SliceProbabilities");
        var managed = model.PredictSliceProbabilities(data);
        for (int i = 0; i < onnx.Length; i++)
            Assert.That(onnx[i], Is.EqualTo(managed[i]).Within(1e-6), $"row {i}");
    }

    [Test]
    public void BatchedOnnxExportRunsInOnnxRuntime()
    {
        var ml = new MLContext(1);
        var planted = SlicingTestData.PlantedSlice(100, 9);
        var data = planted.ToDataView(ml);
        var model = BinarySlicer(ml, pca: 4).Fit(data);
        using var stream = new MemoryStream();
        model.SaveAsOnnx(stream);
        using var session = new InferenceSession(stream.ToArray());
        var inputs = new[]
        {
            NamedOnnxValue.CreateFromTensor("Features", new DenseTensor<float>(planted.X, new[] { 100, planted.D })),
            NamedOnnxValue.CreateFromTensor("__DominoLabelVector", new DenseTensor<float>(planted.Y.Select(y => y ? 1f : 0f).ToArray(), new[] { 100, 1 })),
            NamedOnnxValue.CreateFromTensor("__DominoPredictionVector", new DenseTensor<float>(planted.P, new[] { 100, 1 })),
        };
        using var results = session.Run(inputs);
        var p = results.First(r => r.Name == "SliceProbabilities").AsTensor<float>();
        var managed = model.PredictSliceProbabilities(data);
        for (int i = 0; i < 100; i++)
            for (int j = 0; j < 3; j++)
                Assert.That(p[i, j], Is.EqualTo(managed[i][j]).Within(1e-6), $"row {i}, slice {j}");
    }

    [Test]
    public void ReportCountsMembersAndAccuracies()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.PlantedSlice(1000, 12).ToDataView(ml);
        var model = BinarySlicer(ml).Fit(data);
        var report = model.CreateReport(data, topExamples: 5);
        var probabilities = model.PredictSliceProbabilities(data);
        var labels = data.GetColumn<bool>("Label").ToArray();
        var predicted = data.GetColumn<float>("Probability").Select(p => p > 0.5f).ToArray();
        for (int j = 0; j < 3; j++)
        {
            var s = report.Slices[j];
            var members = Enumerable.Range(0, 1000).Where(i => probabilities[i][j] >= 0.5).ToArray();
            var others = Enumerable.Range(0, 1000).Except(members).ToArray();
            Assert.That(s.Size, Is.EqualTo(members.Length));
            Assert.That(s.ExpectedSize, Is.EqualTo(probabilities.Sum(r => r[j])).Within(1e-9));
            if (members.Length > 0)
                Assert.That(s.AccuracyInside, Is.EqualTo(members.Average(i => labels[i] == predicted[i] ? 1.0 : 0.0)).Within(1e-12));
            Assert.That(s.AccuracyOutside, Is.EqualTo(others.Average(i => labels[i] == predicted[i] ? 1.0 : 0.0)).Within(1e-12));
            Assert.That(s.TopExamples.Select(e => e.Probability), Is.Ordered.Descending);
            Assert.That(s.TopExamples[0].Probability, Is.EqualTo(probabilities.Max(r => r[j])).Within(1e-12));
        }
        // Slice 0 is the planted false-negative slice: all labelled True and predicted False.
        Assert.That(report.Slices[0].DominantLabel, Is.EqualTo("True"));
        Assert.That(report.Slices[0].DominantPrediction, Is.EqualTo("False"));
        Assert.That(report.Slices[0].AccuracyInside, Is.EqualTo(0));
        Assert.That(report.ToString(), Does.Contain("acc. inside"));
    }

    [Test]
    public void EmbeddingSizeMismatchAtScoringNamesTheColumnAndSizes()
    {
        var ml = new MLContext(1);
        var model = BinarySlicer(ml).Fit(SlicingTestData.PlantedSlice(100, 1).ToDataView(ml));
        var shorter = ml.Data.LoadFromEnumerable(new[] { new SlicingTestData.BinaryRow { Features = new float[15], Label = true, Probability = 0.5f } },
            SlicingTestData.VectorSchema<SlicingTestData.BinaryRow>(15));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Transform(shorter));
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain("16").And.Contain("15"));
    }

    [Test]
    public void ScoreWidthDifferentFromClassesThrowsNamingBoth()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.Multiclass(ml, 100, 1, scoreWidth: 4);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Slicing.Domino(numberOfComponents: 16).Fit(data));
        Assert.That(ex!.Message, Does.Contain("'Label'").And.Contain("3 values").And.Contain("'Score'").And.Contain("4 class probabilities"));
    }

    [Test]
    public void NaNEmbeddingThrowsNamingColumnAndRow()
    {
        var ml = new MLContext(1);
        var planted = SlicingTestData.PlantedSlice(100, 1);
        planted.X[37 * planted.D + 2] = float.NaN;
        var ex = Assert.Throws<InvalidOperationException>(() => BinarySlicer(ml).Fit(planted.ToDataView(ml)));
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain("NaN").And.Contain("row 37"));
    }

    [Test]
    public void FewerRowsThanComponentsThrows()
    {
        var ml = new MLContext(1);
        var ex = Assert.Throws<InvalidOperationException>(() => BinarySlicer(ml).Fit(SlicingTestData.PlantedSlice(5, 1).ToDataView(ml)));
        Assert.That(ex!.Message, Does.Contain("5 rows").And.Contain("NumberOfComponents = 8"));
    }

    [Test]
    public void ScoreMarginInsteadOfProbabilityThrows()
    {
        var ml = new MLContext(1);
        var planted = SlicingTestData.PlantedSlice(100, 1);
        planted.P[4] = -2.5f;
        var ex = Assert.Throws<InvalidOperationException>(() => BinarySlicer(ml).Fit(planted.ToDataView(ml)));
        Assert.That(ex!.Message, Does.Contain("'Probability'").And.Contain("-2.5").And.Contain("row 4").And.Contain("[0, 1]"));
    }

    [Test]
    public void ConfusionInitialisationWithTooFewComponentsThrows()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.Multiclass(ml, 100, 1);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Slicing.Domino(numberOfSlices: 3, numberOfComponents: 8).Fit(data));
        Assert.That(ex!.Message, Does.Contain("at least 9 components").And.Contain("found 8"));
    }

    [Test]
    public void MissingPredictionColumnThrowsNamingIt()
    {
        var ml = new MLContext(1);
        var data = SlicingTestData.PlantedSlice(50, 1).ToDataView(ml);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Hazy().Slicing.Domino(numberOfComponents: 8, numberOfSlices: 2).Fit(data));
        Assert.That(ex!.Message, Does.Contain("'Score'").And.Contain("not found"));
        var ex2 = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Transforms.HazyDomino(numberOfComponents: 8, numberOfSlices: 2).GetOutputSchema(ConformanceHelpers.ShapeOf(data.Schema)));
        Assert.That(ex2!.Message, Does.Contain("'Score'"));
    }

    public sealed class SlicedRow
    {
        public float[] SliceProbabilities = Array.Empty<float>();
        public uint Slice;
    }
}
