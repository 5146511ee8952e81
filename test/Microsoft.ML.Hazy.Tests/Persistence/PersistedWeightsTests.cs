using Microsoft.ML.Hazy.Layers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Persistence;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.Attention;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Tests.Mlp;
using Microsoft.ML.Hazy.Tests.Sequence;
using Microsoft.ML.Hazy.Training;
using NUnit.Framework;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Tests.Persistence;

/// <summary>
/// <c>SaveAtomically(..., includeWeights: true)</c> and <c>mlContext.Hazy().LoadModel</c>: the loaded model's network is the
/// saved one bit for bit, so it attributes, streams and trains on; scoring it needs no libtorch.
/// </summary>
public sealed class PersistedWeightsTests
{
    private static MLContext _ml = null!;
    private static IDataView _data = null!;
    private static HazyPredictionTransformer _model = null!;
    private string _folder = null!;

    [OneTimeSetUp]
    public void Train()
    {
        _ml = new MLContext(3);
        _data = Blobs.Keyed(_ml, Blobs.Make(60, 1));
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 2;
        _model = _ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(_data);
    }

    [OneTimeTearDown]
    public void DisposeModel() => _model.Dispose();

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("hazy-weights-").FullName;

    [TearDown]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    private string SaveWithWeights(ITransformer model, string name = "model.zip")
    {
        var path = Path.Combine(_folder, name);
        _ml.Model.SaveAtomically(model, _data.Schema, path, includeWeights: true);
        return path;
    }

    private static float[] Forward(nn.Module<Tensor, Tensor> network, Tensor x)
    {
        network.eval();
        using var _ = no_grad();
        using var y = network.forward(x);
        return y.data<float>().ToArray();
    }

    [Test]
    public void LoadedNetworkComputesTheSameOutputsAndAttributionsBitForBit()
    {
        var path = SaveWithWeights(_model);
        using var loaded = (HazyPredictionTransformer)new MLContext(5).Hazy().LoadModel(path, out var schema);

        Assert.That(schema.Select(c => c.Name), Is.EqualTo(_data.Schema.Select(c => c.Name)));
        Assert.That((loaded.Kind, loaded.FeatureColumnName, loaded.Seed), Is.EqualTo((_model.Kind, _model.FeatureColumnName, _model.Seed)));
        Assert.That(loaded.RowShape, Is.EqualTo(_model.RowShape));
        Assert.That(loaded.ClassNames, Is.EqualTo(_model.ClassNames));
        Assert.That(loaded.TrainingHistory, Is.EqualTo(_model.TrainingHistory));
        Assert.That(loaded.GetOutputSchema(_data.Schema).Select(c => (c.Name, c.Type.ToString())),
            Is.EqualTo(_model.GetOutputSchema(_data.Schema).Select(c => (c.Name, c.Type.ToString()))));
        Assert.That(loaded.Transform(_data).GetColumn<float[]>("Score").ToArray(), Is.EqualTo(_model.Transform(_data).GetColumn<float[]>("Score").ToArray()));

        Assert.That(loaded.Network, Is.InstanceOf<MlpNetwork>().And.Not.SameAs(_model.Network));
        using (var x = randn(new long[] { 7, Blobs.Dimensions }, generator: new Generator(11)))
            Assert.That(Forward(loaded.Network, x), Is.EqualTo(Forward(_model.Network, x)), "same weights, same operations");

        var scoredOriginal = _model.Transform(_data);
        var scoredLoaded = loaded.Transform(_data);
        var original = _ml.Hazy().Interpretation.Attribution(_model, GradientMethod.IntegratedGradients, AttributionTarget.PredictedLabel)
            .Fit(scoredOriginal).Transform(scoredOriginal).GetColumn<float[]>("Attribution").ToArray();
        var restored = _ml.Hazy().Interpretation.Attribution(loaded, GradientMethod.IntegratedGradients, AttributionTarget.PredictedLabel)
            .Fit(scoredLoaded).Transform(scoredLoaded).GetColumn<float[]>("Attribution").ToArray();
        Assert.That(restored, Is.EqualTo(original));
        Assert.That(original.SelectMany(a => a).Any(v => v != 0), Is.True, "the attributions are not trivially zero");
    }

    [Test]
    public void ChainsKeepTheirShapeAndPlainModelLoadIgnoresTheWeights()
    {
        var chain = new TransformerChain<ITransformer>(
            new ITransformer[] { _model, _ml.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel").Fit(_model.Transform(_data)) },
            new[] { TransformerScope.Everything, TransformerScope.Scoring });
        var path = SaveWithWeights(chain);
        var expected = chain.Transform(_data).GetColumn<string>("PredictedClass").ToArray();

        var plain = new MLContext(5).Model.Load(path, out _);
        Assert.That(plain.Transform(_data).GetColumn<string>("PredictedClass").ToArray(), Is.EqualTo(expected), "ML.NET ignores the weights entries");

        var loaded = (TransformerChain<ITransformer>)new MLContext(5).Hazy().LoadModel(path, out _);
        var parts = loaded.ToArray();
        Assert.That(parts, Has.Length.EqualTo(2));
        Assert.That(parts[0], Is.InstanceOf<HazyPredictionTransformer>());
        Assert.That(loaded.GetModelFor(TransformerScope.Training).Count(), Is.EqualTo(1), "the scopes survive the rebuilt chain");
        Assert.That(loaded.Transform(_data).GetColumn<string>("PredictedClass").ToArray(), Is.EqualTo(expected));
        ((HazyPredictionTransformer)parts[0]).Dispose();
    }

    [Test]
    public void WeightsEntriesAreDeterministic()
    {
        var first = Entries(SaveWithWeights(_model, "a.zip"));
        var second = Entries(SaveWithWeights(_model, "b.zip"));
        Assert.That(first.Keys, Is.EquivalentTo(new[] { ModelArchive.Folder + "000/Model.json", ModelArchive.Folder + "000/Weights.bin" }));
        foreach (var (name, bytes) in first)
            Assert.That(second[name], Is.EqualTo(bytes), name);
    }

    private static Dictionary<string, byte[]> Entries(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        return zip.Entries.Where(e => e.FullName.StartsWith(ModelArchive.Folder, StringComparison.Ordinal)).ToDictionary(e => e.FullName, e =>
        {
            using var stream = e.Open();
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            return memory.ToArray();
        });
    }

    [Test]
    public void LoadedModelTrainsOnWithoutChangingItself()
    {
        var path = SaveWithWeights(_model);
        using var loaded = (HazyPredictionTransformer)_ml.Hazy().LoadModel(path, out _);
        var before = NetworkRegistry.Weights(loaded.Network);

        using var refined = _ml.Hazy().ContinueTraining(loaded, new ContinuedTrainingEstimator.Options { NumberOfEpochs = 1, BatchSize = 16, Seed = 4 }).Fit(_data);

        Assert.That(refined.TrainingHistory, Has.Count.EqualTo(1));
        Assert.That(NetworkRegistry.Weights(loaded.Network), Is.EqualTo(before), "the loaded model is not changed");
        var after = NetworkRegistry.Weights(refined.Network);
        Assert.That(after, Has.Length.EqualTo(before.Length), "same architecture");
        Assert.That(after, Is.Not.EqualTo(before), "one epoch moved the weights");
        // It started from the loaded weights: one small epoch stays close to them, far closer than a fresh initialisation.
        using var x = randn(new long[] { 5, Blobs.Dimensions }, generator: new Generator(2));
        var start = Forward(loaded.Network, x);
        var moved = Forward(refined.Network, x);
        Assert.That(start.Zip(moved, (a, b) => Math.Abs(a - b)).Max(), Is.LessThan(0.5 * start.Select(Math.Abs).Max()));
        Assert.That(refined.Transform(_data).GetColumn<float[]>("Score").Count(), Is.EqualTo(60));
    }

    [Test]
    public void WithoutWeightsTheLoadedModelScoresAndSaysWhatAttributionNeeds()
    {
        var path = Path.Combine(_folder, "model.zip");
        _ml.Model.SaveAtomically(_model, _data.Schema, path, includeWeights: false);
        using (var zip = ZipFile.OpenRead(path))
            Assert.That(zip.Entries.Any(e => e.FullName.StartsWith(ModelArchive.Folder, StringComparison.Ordinal)), Is.False);

        var loaded = _ml.Hazy().LoadModel(path, out _);
        Assert.That(loaded, Is.Not.InstanceOf<HazyPredictionTransformer>());
        Assert.That(loaded.Transform(_data).GetColumn<float[]>("Score").ToArray(), Is.EqualTo(_model.Transform(_data).GetColumn<float[]>("Score").ToArray()));
        var attribution = Assert.Throws<NotSupportedException>(() => _ml.Hazy().Interpretation.Attribution(loaded));
        Assert.That(attribution!.Message, Does.Contain("includeWeights: true").And.Contain("LoadModel"));
        var training = Assert.Throws<NotSupportedException>(() => _ml.Hazy().ContinueTraining(loaded));
        Assert.That(training!.Message, Does.Contain("includeWeights: true"));
    }

    [Test]
    public void NetworkWithoutRecipeFailsBeforeTheFileIsTouched()
    {
        var path = SaveWithWeights(_model);
        var good = File.ReadAllBytes(path);
        using var odd = new HazyPredictionTransformer(_model.ScoringChain, nn.Linear(Blobs.Dimensions, 3), _model.Kind, _model.FeatureColumnName,
            _model.RowShape.ToArray(), null, Array.Empty<TrainingEpoch>(), 1);

        var error = Assert.Throws<NotSupportedException>(() => _ml.Model.SaveAtomically(odd, _data.Schema, path, includeWeights: true));
        Assert.That(error!.Message, Does.Contain("Linear"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(good));
        Assert.That(Directory.GetFiles(_folder).Select(Path.GetFileName), Is.EqualTo(new[] { "model.zip" }));
    }

    [Test]
    public void LoadedSequenceModelStreamsLikeTheOriginal()
    {
        var ml = new MLContext(1);
        var data = Waves.Keyed(ml, Waves.Make(40, 1));
        var options = Waves.SmallOptions();
        options.NumberOfEpochs = 1;
        using var model = ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(data);
        var path = Path.Combine(_folder, "s4d.zip");
        ml.Model.SaveAtomically(model, data.Schema, path, includeWeights: true);
        using var loaded = (HazyPredictionTransformer)ml.Hazy().LoadModel(path, out _);

        var series = Waves.Series(new Random(9), 1, 40, 1.3f);
        using var original = new SequenceStreamingPredictor(model);
        using var restored = new SequenceStreamingPredictor(loaded);
        Assert.That(restored.Append(series), Is.EqualTo(original.Append(series)));
        Assert.That(loaded.Transform(data).GetColumn<float[]>("Score").ToArray(), Is.EqualTo(model.Transform(data).GetColumn<float[]>("Score").ToArray()));
    }

    private static IEnumerable<TestCaseData> Networks()
    {
        yield return new TestCaseData((Func<nn.Module<Tensor, Tensor>>)(() => new MlpNetwork(16, new[] { 16, 8 }, 3, MlpActivation.Gelu, 0.1, true, monarchBlocks: 4)), new long[] { 16 })
            .SetName("Monarch MLP");
        yield return new TestCaseData((Func<nn.Module<Tensor, Tensor>>)(() => new CnnNetwork(1, 8, 8, new[] { 4, 6 }, 3, 1, 1, 0.1, 3)), new long[] { 64 })
            .SetName("CNN");
        yield return new TestCaseData((Func<nn.Module<Tensor, Tensor>>)(() => new SequenceNetwork(2, 3, 2, new SequenceNetworkShape(8, 0.1, true, 2),
            SequenceNormalization.BatchNorm, true, new S4DBackbone(new S4DOptions { StateSize = 8, Initialization = S4DInitialization.Inv }))), new long[] { 12, 2 })
            .SetName("S4D sequence, bidirectional, Monarch");
        yield return new TestCaseData((Func<nn.Module<Tensor, Tensor>>)(() => new SequenceNetwork(2, 1, 1, new SequenceNetworkShape(8, 0, false),
            SequenceNormalization.LayerNorm, false, new TransformerBackbone(new TransformerOptions { NumberOfHeads = 2 }))), new long[] { 12, 2 })
            .SetName("Transformer sequence");
    }

    [TestCaseSource(nameof(Networks))]
    public void RecipeAndStateDictRebuildTheNetworkExactly(Func<nn.Module<Tensor, Tensor>> create, long[] row)
    {
        using var network = create();
        using (var generator = new Generator(7))
            TrainingRandom.Initialize(network, generator);
        var recipe = NetworkRegistry.RecipeOf(network);
        var weights = NetworkRegistry.Weights(network);
        Assert.That(NetworkRegistry.Weights(network), Is.EqualTo(weights), "the state dict is written the same way twice");

        using var copy = NetworkRegistry.Restore(new NetworkRecipe(recipe.Kind, recipe.Arguments), weights, "test");
        Assert.That(copy.GetType(), Is.EqualTo(network.GetType()));
        Assert.That(NetworkRegistry.RecipeOf(copy), Is.EqualTo(recipe));
        Assert.That(NetworkRegistry.Weights(copy), Is.EqualTo(weights));
        using var x = randn(new long[] { 3 }.Concat(row).ToArray(), generator: new Generator(5));
        Assert.That(Forward(copy, x), Is.EqualTo(Forward(network, x)));

        var wrong = new NetworkRecipe(MlpNetwork.RecipeKind, """{"InputSize":4,"Hidden":[2],"OutputSize":1,"Activation":"Relu","Dropout":0,"LayerNorm":false,"MonarchBlocks":0}""");
        if (network is not MlpNetwork)
            Assert.Throws<InvalidDataException>(() => NetworkRegistry.Restore(wrong, weights, "test"));
    }

    [Test]
    public void ScoringInAProcessWithoutLibtorchGivesTheSameScores()
    {
        var path = SaveWithWeights(_model);
        var rows = Blobs.Make(12, 8);
        var csv = Path.Combine(_folder, "rows.csv");
        File.WriteAllLines(csv, rows.Select(r => string.Join(",", r.Features.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))));
        var expected = _model.Transform(_ml.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score").ToArray();

        var probe = CopyProbeWithoutTorch(Path.Combine(_folder, "probe"));
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _folder };
        start.ArgumentList.Add(Path.Combine(probe, "Hazy.ScoringProbe.dll"));
        start.ArgumentList.Add(path);
        start.ArgumentList.Add(csv);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("the probe still ran after 60 s");
        }
        Assert.That(process.ExitCode, Is.EqualTo(0), error.Result + output.Result);
        var lines = output.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).ToArray();
        var scores = lines.Take(rows.Length).Select(l => l.Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        Assert.That(scores, Is.EqualTo(expected));
        Assert.That(lines, Does.Contain("model: HazyPredictionTransformer"), "the weights were read, lazily");
        Assert.That(lines, Does.Contain("native torch loaded: False"));
    }

    /// <summary>The probe's build output (built beside the tests) minus every libtorch, c10 and TorchSharp native library.</summary>
    private static string CopyProbeWithoutTorch(string destination)
    {
        var testDirectory = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        var root = testDirectory;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Hazy.ML.sln")))
            root = root.Parent;
        Assert.That(root, Is.Not.Null, "repository root");
        var built = Path.Combine(root!.FullName, "test", "Hazy.ScoringProbe", "bin", testDirectory.Parent!.Name, testDirectory.Name);
        Assert.That(File.Exists(Path.Combine(built, "Hazy.ScoringProbe.dll")), Is.True, $"{built} holds the built probe");
        static bool IsTorchNative(string name) =>
            name.StartsWith("libtorch", StringComparison.Ordinal) || name.StartsWith("libc10", StringComparison.Ordinal)
            || name.StartsWith("torch", StringComparison.OrdinalIgnoreCase) && !name.EndsWith(".dll", StringComparison.Ordinal)
            || name.Contains("LibTorchSharp", StringComparison.Ordinal) || name.StartsWith("c10", StringComparison.Ordinal);
        foreach (var file in Directory.EnumerateFiles(built, "*", SearchOption.AllDirectories))
        {
            var name = Path.GetFileName(file);
            if (IsTorchNative(name))
                continue;
            var target = Path.Combine(destination, Path.GetRelativePath(built, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        Assert.That(Directory.EnumerateFiles(destination, "*", SearchOption.AllDirectories).Select(Path.GetFileName)
            .Where(n => n!.StartsWith("libtorch", StringComparison.Ordinal) || n.StartsWith("libc10", StringComparison.Ordinal)), Is.Empty);
        return destination;
    }
}
