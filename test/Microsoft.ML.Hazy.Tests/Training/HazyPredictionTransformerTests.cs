using System.IO.Compression;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Tests.Mlp;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Training;

[TestFixture]
public sealed class HazyPredictionTransformerTests
{
    [Test]
    public void SaveAsOnnxAfterDisposeThrowsObjectDisposedAndLeavesTheFileAlone()
    {
        var ml = new MLContext(3);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 1));
        var options = Blobs.SmallOptions();
        options.NumberOfEpochs = 1;
        var model = ml.MulticlassClassification.Trainers.HazyMlp(options).Fit(data);
        model.Dispose();

        using var stream = new MemoryStream();
        var ex = Assert.Throws<ObjectDisposedException>(() => model.SaveAsOnnx(stream));
        Assert.That(ex!.ObjectName, Does.Contain(nameof(Hazy.Training.HazyPredictionTransformer)));
        Assert.That(stream.Length, Is.Zero);

        var folder = Directory.CreateTempSubdirectory("hazy-disposed-").FullName;
        try
        {
            var path = Path.Combine(folder, "model.onnx");
            File.WriteAllText(path, "previous");
            Assert.Throws<ObjectDisposedException>(() => model.SaveAsOnnx(path));
            Assert.That(File.ReadAllText(path), Is.EqualTo("previous"));
            Assert.That(Directory.GetFiles(folder), Has.Length.EqualTo(1));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }

        // Scoring goes through the ONNX chain, which does not need the freed network.
        Assert.That(model.Transform(data).GetColumn<float[]>("Score").Count(), Is.EqualTo(60));
    }

    [Test]
    public void PredictionEngineOnAnUnsizedFloatArrayNamesColumnAndSizes()
    {
        var ml = new MLContext(1);
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(Blobs.SmallOptions()).Fit(Blobs.Keyed(ml, Blobs.Make(60, 1)));

        var ex = Assert.Catch(() =>
        {
            var engine = ml.Model.CreatePredictionEngine<UnsizedRow, ScoreOnly>(model);
            engine.Predict(new UnsizedRow { Features = new float[Blobs.Dimensions] });
        });

        Assert.That(ex, Is.InstanceOf<ArgumentOutOfRangeException>().Or.InstanceOf<InvalidOperationException>());
        Assert.That(ex!.Message, Does.Contain("'Features'").And.Contain($"{Blobs.Dimensions} Single").And.Contain("variable-size"));
    }

    [Test]
    public void CorruptOnnxEntryInASavedModelNamesTheFileAndTheEntry()
    {
        var ml = new MLContext(1);
        var data = Blobs.Keyed(ml, Blobs.Make(60, 1));
        using var model = ml.MulticlassClassification.Trainers.HazyMlp(Blobs.SmallOptions()).Fit(data);
        var path = Path.Combine(Path.GetTempPath(), $"hazy-model-{Guid.NewGuid():N}.zip");
        try
        {
            ml.Model.Save(model, data.Schema, path);
            Assert.That(new MLContext(2).Hazy().LoadModel(path, out _), Is.Not.Null, "the intact file loads");
            string entryName;
            using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            {
                var entry = zip.Entries.Single(e => e.Name == "OnnxModel");
                entryName = entry.FullName;
                byte[] bytes;
                using (var stream = entry.Open())
                using (var memory = new MemoryStream())
                {
                    stream.CopyTo(memory);
                    bytes = memory.ToArray();
                }
                entry.Delete();
                bytes.AsSpan(bytes.Length / 3, 64).Fill(0xFF);
                using var rewritten = zip.CreateEntry(entryName).Open();
                rewritten.Write(bytes);
            }

            var ex = Assert.Throws<InvalidDataException>(() => new MLContext(2).Hazy().LoadModel(path, out _));

            Assert.That(ex!.Message, Does.Contain(path).And.Contain($"'{entryName}'"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    private sealed class UnsizedRow
    {
        public float[] Features = Array.Empty<float>();
    }

    private sealed class ScoreOnly
    {
        public float[] Score = Array.Empty<float>();
    }
}
