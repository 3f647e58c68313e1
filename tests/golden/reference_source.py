"""What the golden scripts share to run the reference's own code (`from reference_source import ...`): pieces of
one of its scripts cut out by marker lines (executed there, never copied here), and its chat task loaders
pointed at the smoke stand-in datasets in manifests/data/chat_smoke."""
import glob, os


class ScriptSource:
    """The text of `<checkout>/scripts/<name>`, to cut pieces out of."""

    def __init__(self, ref, name):
        self.text = open(os.path.join(ref, "scripts", name)).read()

    def between(self, start, end):
        """The lines from the one containing `start` up to (excluding) the one containing `end`."""
        i = self.text.rindex("\n", 0, self.text.index(start)) + 1
        return self.text[i:self.text.index(end, i)]


def dedent(code):
    lines = code.splitlines()
    indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return "\n".join(l[indent:] for l in lines)


def use_chat_standins(standins):
    """Makes the reference's GSM8K, MMLU and SmolTalk tasks read the parquet stand-ins under `standins` (the
    Hub's layout; MMLU's auxiliary_train split flattened from its `train` column, as the Hub's export is)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tasks.common as common
    import tasks.gsm8k, tasks.mmlu, tasks.smoltalk

    def load_standin(repo_id, subset="default", split="train"):
        flatten = repo_id == "cais/mmlu" and split == "auxiliary_train"
        folder, name = ("auxiliary_train", "train") if flatten else ("data" if subset == "default" else subset, split)
        files = sorted(glob.glob(os.path.join(standins, repo_id, folder, f"{name}-*.parquet")))
        assert files, (repo_id, subset, split)
        table = pa.concat_tables([pq.read_table(f) for f in files])
        if flatten:
            table = pa.Table.from_struct_array(table.column("train").combine_chunks())
        return common.HubDataset(table)

    for module in (tasks.gsm8k, tasks.mmlu, tasks.smoltalk):
        module.load_hub_dataset = load_standin
