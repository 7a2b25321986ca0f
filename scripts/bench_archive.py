#!/usr/bin/env python3
"""Archive benchmark: search and playback over a large archive, through the real HTTP API.

Dataset (defaults), bulk-loaded with sqlite3 into a database made by the real migrations:
a court tree (1 supreme, 1 high, 10 intermediate, 100 basic courts), judges, archivists,
operators and an admin; petitioners and petitions; 1,000,000 ended visits over three years,
each with a ready, signed recording; for 100,000 of them transcript lines and notes (Chinese
petition sentences from a vocabulary of ~300 words, with some Latin words and numbers) in
``recording_texts`` and its FTS5 index; one real 60-second composite.mp4 for playback.
Generation runs in a child process, so ``max_rss_mb`` is the peak RSS of the process that
serves and measures (the app in-process on an aiohttp TestServer, as admin and archivist).

- ``lookup_by_number``: ``GET /api/v1/recordings?number=<existing number>``
- ``fulltext``: ``GET /api/v1/recordings?q=<word | phrase | several words>`` (page of 50)
- ``fulltext_as_archivist``: the same, as the archivist of one intermediate court
- ``first_byte``: ``GET /api/v1/recordings/<id>/files/composite.mp4`` with
  ``Range: bytes=<random offset>-`` (time to the first byte of the body; must be 206)

    .venv/bin/python scripts/bench_archive.py [--visits 1000000] [--transcripts 100000]
        [--queries 200] [--data-dir DIR] [--keep]

The last line printed is one JSON object of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from bisect import bisect
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from itertools import accumulate
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from config.settings import Settings  # noqa: E402
from recorder.search import tokens  # noqa: E402
from scheduler.accounts import hash_password  # noqa: E402
from web.app import create_app  # noqa: E402
from web.cli import migrate, setup_logging  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
PASSWORD = "Bench-Passw0rd!"
STAMP = "%Y-%m-%d %H:%M:%S.%f"
MARKER = "bench_archive.json"
FORMAT = 1  # bump when the generated data changes, so old data dirs are not reused
TARGETS = {
    "lookup_by_number_p99_ms": 100.0,
    "fulltext_p99_ms": 300.0,
    "fulltext_as_archivist_p99_ms": 300.0,
}
BATCH = 50_000

# Words and phrases of petition receptions, roughly most frequent first (their frequency in
# the generated transcripts follows Zipf's law by this order).
WORDS = """
法院 判决 我们 请求 执行 信访人 法官 案件 申请 情况 问题 材料 证据 上诉 再审 申诉 当事人
对方 合同 赔偿 补偿 房子 工资 欠款 利息 调解 一审 二审 裁定 程序 依法 答复 处理 反映 诉求
时间 单位 公司 政府 村委会 土地 拆迁 补偿款 安置 房屋 征收 宅基地 承包地 户口 老人 孩子
医疗费 误工费 工伤 劳动合同 社保 养老 退休金 抚养费 离婚 婚姻 继承 遗产 借款 借条 担保
抵押 查封 冻结 拍卖 强制执行 被执行人 失信 限制高消费 财产 银行 账户 存款 车辆 股权 执行款
到账 分配 申请人 代理人 律师 法律援助 司法救助 困难 生活 身体 住院 残疾 鉴定 伤残 交通事故
保险 理赔 责任 过错 事实 认定 错误 不公 不服 维持 撤销 改判 发回 重审 驳回 立案 受理 期限
超期 审限 拖延 送达 传票 开庭 庭审 笔录 录音 录像 视频 照片 发票 收据 转账 记录 微信
聊天记录 短信 通话 证人 证言 书证 物证 质证 举证 责任人 法定代表人 负责人 包工头 工程款
农民工 工地 项目 施工 合同纠纷 买卖 租赁 物业 业主 开发商 购房 首付 贷款 按揭 违约 违约金
定金 退款 押金 装修 质量 维修 损失 经济损失 精神损害 名誉 侵权 邻居 纠纷 矛盾 冲突 打架
派出所 公安 报警 刑事 民事 行政 检察院 监督 抗诉 纪委 人大 信访局 领导 接访 约谈 视频接访
远程 网上 平台 预约 排队 等候 材料清单 身份证 复印件 原件 委托书 授权 签字 盖章 公证
评估 审计 价格 标准 计算 金额 本金 总额 万元 每月 每年 三年 五年 去年 今年 明年 上个月
下周 尽快 马上 耐心 理解 支持 配合 解释 说明 告知 记录在案 转交 承办人 合议庭 审判长
审判委员会 院长 庭长 书记员 执行局 立案庭 信访办 诉讼费 缓交 减免 退还 费用 收费 规定
法律 条款 依据 政策 文件 通知 决定 意见 建议 结论 复查 复核 听证 听证会 协商 和解 达成
协议 履行 分期 还款 计划 承诺 保证 答应 拒绝 不同意 同意 满意 不满意 投诉 举报 情绪
激动 冷静 安全 隐私 保密 家属 妻子 丈夫 父亲 母亲 儿子 女儿 兄弟 亲戚 朋友 同事 老板 员工
"""
VOCABULARY = list(dict.fromkeys(WORDS.split()))

LATIN = [
    "2019年", "2020年", "2021年", "2022年", "2023年", "2024年", "5万元", "12万元", "30万元",
    "3000元", "120平方米", "3号楼", "502室", "A区", "B栋", "APP", "PDF", "GPS", "EMS",
    "12368热线", "110", "No.7", "ABC公司", "WeChat", "ID",
]  # fmt: skip

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华建国志红玉兰凤云飞鹏辉亮成龙海波宁燕梅琳斌"
CATEGORIES = ["涉诉信访", "执行", "申诉", "国家赔偿", "来信", "司法救助"]
PETITIONER_OPENERS = ["我想问一下", "法官您好", "我的诉求是", "我要反映", "说实话", "我不明白"]
JUDGE_OPENERS = ["您好", "关于您反映的", "根据规定", "我们会", "请您说明", "本院已经"]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).strftime(STAMP)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Talk:
    """Sentences of a reception, words drawn by Zipf's law over VOCABULARY."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.cum = list(accumulate(1.0 / (i + 1) ** 0.9 for i in range(len(VOCABULARY))))

    def word(self) -> str:
        return VOCABULARY[bisect(self.cum, self.rnd.random() * self.cum[-1])]

    def words(self, k: int) -> list[str]:
        out = [self.word()]
        while len(out) < k:
            word = self.word()
            if word != out[-1]:
                out.append(word)
        return out

    def sentence(self, openers: Sequence[str]) -> str:
        rnd = self.rnd
        parts = self.words(rnd.randint(3, 8))
        if rnd.random() < 0.25:
            parts.insert(rnd.randrange(len(parts)), rnd.choice(LATIN))
        if rnd.random() < 0.5:
            parts.insert(0, rnd.choice(openers) + "，")
        text = ""
        for i, part in enumerate(parts):
            text += part
            if i < len(parts) - 1 and rnd.random() < 0.2:
                text += "，"
        return text + rnd.choice("。。。？！")


def person_name(rnd: random.Random) -> str:
    return rnd.choice(SURNAMES) + "".join(rnd.choices(GIVEN, k=rnd.choice((1, 2, 2))))


def id_number(pid: int, court: int) -> str:
    """An 18-character resident ID number (with its check character), unique per ``pid``."""
    born = datetime(1945, 1, 1) + timedelta(days=(pid // 1000) * 23)
    body = f"{110100 + court:06d}{born:%Y%m%d}{pid % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


# ------------------------------------------------------------------------------ generation


def _defer(con: sqlite3.Connection, tables: Sequence[str], kind: str) -> list[str]:
    """Drop the ``kind`` objects (index | trigger) of ``tables`` for the bulk load; returns
    their exact SQL, to be run again after it (so the schema stays the migrations')."""
    marks = ",".join("?" * len(tables))
    rows = con.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type = ? AND tbl_name IN ({marks})"
        " AND sql IS NOT NULL",
        (kind, *tables),
    ).fetchall()
    for name, _ in rows:
        con.execute(f'DROP {kind.upper()} "{name}"')
    return [sql for _, sql in rows]


def _insert(con: sqlite3.Connection, sql: str, rows: Iterator[tuple[Any, ...]], what: str) -> int:
    count = 0
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            con.executemany(sql, batch)
            count += len(batch)
            batch.clear()
            if count % (BATCH * 10) == 0:
                con.commit()
                log(f"{what}: {count:,}")
    con.executemany(sql, batch)
    count += len(batch)
    con.commit()
    return count


def generate(data_dir: Path, n_visits: int, n_transcripts: int, seed: int) -> dict[str, Any]:
    """Bulk-load the dataset with sqlite3 into a database made by the real migrations."""
    started = time.perf_counter()
    settings = Settings(data_dir=data_dir)
    migrate(settings)
    db_path = data_dir / "vreception.db"
    recordings_dir = settings.resolved_recordings_dir.resolve()
    rnd = random.Random(seed)
    talk = Talk(rnd)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")
    con.execute("PRAGMA temp_store=MEMORY")
    now = time.time()
    created = ts(now - 4 * 365 * 86400)

    # the court tree: supreme ─ high ─ 10 intermediate ─ 10 basic each
    courts: list[tuple[Any, ...]] = [
        (1, "SPC", "最高人民法院", "supreme", None, created),
        (2, "H1", "某省高级人民法院", "high", 1, created),
    ]
    mids = list(range(3, 13))
    basics = list(range(13, 113))
    parent_of: dict[int, int] = {}
    courts += [(c, f"M{c}", f"某省第{c - 2}中级人民法院", "intermediate", 2, created) for c in mids]
    for k, c in enumerate(basics):
        parent_of[c] = mids[k // 10]
        name = f"第{c - 2}中院辖区第{k % 10 + 1}基层人民法院"
        courts.append((c, f"B{c}", name, "basic", parent_of[c], created))
    con.executemany(
        "INSERT INTO courts (id, code, name, level, parent_id, created_at) VALUES (?,?,?,?,?,?)",
        courts,
    )
    pw = hash_password(PASSWORD)  # one argon2 hash, shared by every account
    users: list[tuple[Any, ...]] = [(1, "admin", "系统管理员", "admin", None)]
    judges_of: dict[int, list[tuple[int, str]]] = {}
    for court in [2, *mids, *basics]:
        for j in range(5 if court <= 12 else 2):
            uid = len(users) + 1
            name = rnd.choice(SURNAMES) + "法官"
            users.append((uid, f"judge{court}_{j}", name, "judge", court))
            judges_of.setdefault(court, []).append((uid, name))
    for court in [2, *mids]:
        users.append((len(users) + 1, f"arch{court}", f"档案员{court}", "archivist", court))
    operator_of: dict[int, int] = {}
    for court in basics:
        operator_of[court] = len(users) + 1
        users.append((len(users) + 1, f"op{court}", f"操作员{court}", "operator", court))
    con.executemany(
        "INSERT INTO users (id, username, display_name, role, court_id, password_hash, active,"
        " created_at, password_changed_at) VALUES (?,?,?,?,?,?,1,?,?)",
        [(*u, pw, created, created) for u in users],
    )
    con.executemany(
        "INSERT INTO reception_rooms (id, court_id, name, location, active, created_at)"
        " VALUES (?,?,?,?,1,?)",
        [(c, c, "第一接访室", "诉讼服务中心一楼", created) for c in basics],
    )
    con.commit()
    deferred = _defer(
        con, ["petitioners", "petitions", "visits", "recordings", "recording_texts"], "index"
    )
    triggers = _defer(con, ["recording_texts"], "trigger")

    n_petitioners = max(len(basics), n_visits * 3 // 10)
    n_petitions = max(n_petitioners, n_visits * 45 // 100)
    court_of_petitioner = [0] + [basics[rnd.randrange(len(basics))] for _ in range(n_petitioners)]
    names = [""] + [person_name(rnd) for _ in range(n_petitioners)]
    _insert(
        con,
        "INSERT INTO petitioners (id, court_id, name, id_type, id_number, phone, created_at)"
        " VALUES (?,?,?,'resident_id',?,?,?)",
        (
            (
                pid,
                court_of_petitioner[pid],
                names[pid],
                id_number(pid, court_of_petitioner[pid]),
                f"13{rnd.randrange(10**9):09d}",
                created,
            )
            for pid in range(1, n_petitioners + 1)
        ),
        "petitioners",
    )
    petitioner_of = [0] + [
        (p if p <= n_petitioners else rnd.randint(1, n_petitioners))
        for p in range(1, n_petitions + 1)
    ]
    first_year = datetime.fromtimestamp(now - 3 * 365 * 86400, TZ).year
    _insert(
        con,
        "INSERT INTO petitions (id, court_id, petitioner_id, number, category, summary,"
        " judgment_ref, created_at) VALUES (?,?,?,?,?,?,?,?)",
        (
            (
                pid,
                court_of_petitioner[petitioner_of[pid]],
                petitioner_of[pid],
                f"（{first_year + pid * 3 // (n_petitions + 1)}）某"
                f"{court_of_petitioner[petitioner_of[pid]]:04d}信{pid}号",
                rnd.choice(CATEGORIES),
                talk.sentence(PETITIONER_OPENERS),
                f"（{first_year - 1}）某{court_of_petitioner[petitioner_of[pid]]:04d}"
                f"民初{rnd.randrange(1, 9999)}号",
                created,
            )
            for pid in range(1, n_petitions + 1)
        ),
        "petitions",
    )

    # visits in time order over three years (working days, half-hour slots, local time)
    days: list[float] = []
    day = datetime.fromtimestamp(now - 3 * 365 * 86400, TZ).date()
    while len(days) < 3 * 250:
        if day.weekday() < 5:
            days.append(datetime.combine(day, clock_time(0), TZ).timestamp())
        day += timedelta(days=1)
    with_text = set(rnd.sample(range(n_visits), min(n_transcripts, n_visits)))
    visit_ids: list[str] = []
    starts: list[float] = []
    texts: list[tuple[int, int, int, list[tuple[int, str]]]] = []

    def visit_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(n_visits):
            vid = f"{rnd.getrandbits(128):032x}"
            pet = rnd.randint(1, n_petitions)
            court = court_of_petitioner[petitioner_of[pet]]
            r = rnd.random()
            recv = parent_of[court] if r < 0.8 else (court if r < 0.9 else 2)
            judge, _ = rnd.choice(judges_of[recv])
            start = days[i * len(days) // n_visits] + (9 * 60 + 30 * rnd.randrange(15)) * 60
            visit_ids.append(vid)
            starts.append(start)
            if i in with_text:
                texts.append((i, pet, judge, judges_of[recv]))
            op = operator_of[court]
            yield (
                vid, pet, court, recv, judge, court, "ended", ts(start), ts(start + 1800),
                ts(start - 86400 * rnd.randint(1, 20)), ts(start + 1800), rnd.random() < 0.05,
                op, op, ts(start - 600), "resident_id", "1101**********123X",
            )  # fmt: skip

    _insert(
        con,
        "INSERT INTO visits (id, petition_id, court_id, receiving_court_id, judge_id, room_id,"
        " state, starts_at, ends_at, created_at, updated_at, walk_in, booked_by, checked_in_by,"
        " checked_in_at, checkin_document_type, checkin_document_masked)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        visit_rows(),
        "visits",
    )
    text_rnd = random.Random(seed + 1)

    def recording_rows() -> Iterator[tuple[Any, ...]]:
        for vid, start in zip(visit_ids, starts, strict=True):
            duration = round(text_rnd.uniform(480, 1790), 2)  # starts with the visit
            yield (
                vid, str(recordings_dir / vid), ts(start), ts(start + duration), duration,
                int(duration * 160_000), ts(start + 1900),
            )  # fmt: skip

    _insert(
        con,
        "INSERT INTO recordings (visit_id, state, step, progress, message, transcript, folder,"
        " started_at, ended_at, duration_seconds, size_bytes, attempts, details, legal_hold,"
        " hold_reason, updated_at, sealed, seal_reason, integrity) VALUES (?, 'ready', 'done',"
        " 100, '', '转写不可用：未配置普通话识别模型', ?, ?, ?, ?, ?, 1, '{}', 0, '', ?,"
        " 0, '', 'signed')",
        recording_rows(),
        "recordings",
    )
    log("recordings: sealing and holding a few")
    sealed = rnd.sample(visit_ids, max(1, n_visits // 500))
    con.executemany(
        "UPDATE recordings SET sealed = 1, seal_reason = '涉及国家秘密' WHERE visit_id = ?",
        [(v,) for v in sealed],
    )
    con.executemany(
        "UPDATE recordings SET legal_hold = 1, hold_reason = '案件尚在复查' WHERE visit_id = ?",
        [(v,) for v in rnd.sample(visit_ids, max(1, n_visits // 200))],
    )
    con.executemany(
        "UPDATE recordings SET transcript = 'ok' WHERE visit_id = ?",
        [(visit_ids[t[0]],) for t in texts],
    )
    con.commit()

    def text_rows() -> Iterator[tuple[Any, ...]]:
        row_id = 0
        for i, pet, judge, colleagues in texts:
            vid = visit_ids[i]
            judge_name = next(n for u, n in colleagues if u == judge)
            petitioner = names[petitioner_of[pet]]
            at = text_rnd.uniform(5, 30)
            for k in range(8):
                role, speaker = ("petitioner", petitioner) if k % 2 else ("judge", judge_name)
                line = talk.sentence(PETITIONER_OPENERS if k % 2 else JUDGE_OPENERS)
                end = at + len(line) * 0.28
                row_id += 1
                toks = " ".join(tokens(line))
                yield (row_id, vid, "line", round(at, 2), round(end, 2), role, speaker, line, toks)
                at = end + text_rnd.uniform(1, 40)
            for _ in range(text_rnd.choice((1, 1, 2))):
                note = "记录：" + talk.sentence(JUDGE_OPENERS)
                row_id += 1
                pos = round(text_rnd.uniform(10, at), 2)
                yield (row_id, vid, "note", pos, pos, "judge", judge_name, note,
                       " ".join(tokens(note)))  # fmt: skip

    n_texts = _insert(
        con,
        'INSERT INTO recording_texts (id, visit_id, kind, start, "end", role, speaker, text,'
        " tokens) VALUES (?,?,?,?,?,?,?,?,?)",
        text_rows(),
        "transcript lines and notes",
    )
    loaded = time.perf_counter() - started
    log(f"rows loaded in {loaded:.0f} s; building indexes")
    for sql in deferred:
        con.execute(sql)
    con.commit()
    log(f"indexes built at {time.perf_counter() - started:.0f} s; full-text index")
    con.execute("INSERT INTO recording_texts_fts(recording_texts_fts) VALUES ('rebuild')")
    for sql in triggers:
        con.execute(sql)
    con.commit()
    log(f"full-text index built at {time.perf_counter() - started:.0f} s; checking keys")
    broken = con.execute("PRAGMA foreign_key_check").fetchall()
    assert not broken, f"foreign keys broken: {broken[:5]}"
    log(f"keys checked at {time.perf_counter() - started:.0f} s; ANALYZE")
    con.execute("ANALYZE")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    media_visit = visit_ids[texts[0][0] if texts else 0]
    seconds = time.perf_counter() - started
    log(f"dataset ready in {seconds:.0f} s")
    return {
        "format": FORMAT,
        "visits": n_visits,
        "transcripts": len(texts),
        "seed": seed,
        "recordings": n_visits,
        "text_rows": n_texts,
        "petitioners": n_petitioners,
        "petitions": n_petitions,
        "courts": len(courts),
        "users": len(users),
        "sealed": len(sealed),
        "media_visit": media_visit,
        "archivist": f"arch{mids[0]}",
        "generation_seconds": round(seconds, 1),
        "load_seconds": round(loaded, 1),
        "generate_max_rss_mb": round(rss_mb(), 1),
    }


def make_composite(folder: Path) -> Path:
    """A real 60-second H.264 composite (fast start), as the pipeline leaves one."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "composite.mp4"
    if not out.exists():
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", "testsrc2=size=640x360:rate=25", "-t", "60", "-c:v", "libx264",
             "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(out)],
            check=True,
        )  # fmt: skip
    return out


def prepare(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """The dataset in ``data_dir``: reused when it was made with the same sizes, else made
    (in a child process, so its memory does not count against the measured one)."""
    marker = data_dir / MARKER
    db_path = data_dir / "vreception.db"
    wanted = {"format": FORMAT, "visits": args.visits, "transcripts": args.transcripts}
    wanted["seed"] = args.seed
    if marker.exists():
        meta: dict[str, Any] = json.loads(marker.read_text())
        if db_path.exists() and all(meta.get(k) == v for k, v in wanted.items()):
            log(f"reusing the dataset in {data_dir} (made in {meta['generation_seconds']} s)")
            make_composite(
                Settings(data_dir=data_dir).resolved_recordings_dir / meta["media_visit"]
            )
            return {**meta, "reused": True}
        log(f"{data_dir} holds another dataset: making a new one")
    elif db_path.exists():
        sys.exit(f"{db_path} exists and was not made by this benchmark: choose another --data-dir")
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), marker):
        path.unlink(missing_ok=True)
    shutil.rmtree(data_dir / "recordings", ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--generate-only"]
    command += ["--data-dir", str(data_dir), "--visits", str(args.visits)]
    command += ["--transcripts", str(args.transcripts), "--seed", str(args.seed)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    meta = json.loads(done.stdout.strip().splitlines()[-1])
    make_composite(Settings(data_dir=data_dir).resolved_recordings_dir / meta["media_visit"])
    marker.write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    return {**meta, "reused": False}


# ------------------------------------------------------------------------------ measuring


def queries(rnd: random.Random, n: int) -> list[tuple[str, str]]:
    """(kind, q): single words, two-word phrases as said, and several words on one line."""
    talk = Talk(rnd)
    out: list[tuple[str, str]] = []
    for i in range(n):
        r = i % 10
        if r < 5:
            out.append(("word", rnd.choice(VOCABULARY)))
        elif r < 8:
            words = talk.words(6)
            k = rnd.randrange(5)
            out.append(("phrase", words[k] + words[k + 1]))
        else:
            out.append(("words", " ".join(rnd.sample(VOCABULARY, rnd.choice((2, 2, 3))))))
    rnd.shuffle(out)
    return out


CPU: dict[str, list[float]] = {}


async def timed_get(
    client: TestClient[Any, Any], path: str, params: dict[str, str], kind: str = ""
) -> tuple[float, dict[str, Any]]:
    """Wall time of one request (ms) and its answer; the process CPU time it took (every
    thread: the app's database thread too) is kept in CPU[kind]."""
    cpu = time.process_time()
    started = time.perf_counter()
    resp = await client.get(path, params=params)
    raw = await resp.content.read()  # not resp.read(): TestClient keeps every response
    took = (time.perf_counter() - started) * 1000
    if kind:
        CPU.setdefault(kind, []).append((time.process_time() - cpu) * 1000)
    assert resp.status == 200, (resp.status, raw[:300])
    return took, json.loads(raw)


async def login(client: TestClient[Any, Any], username: str) -> None:
    resp = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
    )
    assert resp.status == 200, await resp.text()


def sample_numbers(db_path: Path, rnd: random.Random, n: int, n_visits: int) -> list[str]:
    """Petition numbers of random visits (each has a recording)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rowids = [rnd.randint(1, n_visits) for _ in range(n)]
        marks = ",".join("?" * len(rowids))
        found = [
            row[0]
            for row in con.execute(
                "SELECT p.number FROM visits v JOIN petitions p ON p.id = v.petition_id"
                f" WHERE v.rowid IN ({marks})",
                rowids,
            )
        ]
    finally:
        con.close()
    rnd.shuffle(found)
    return found


async def measure(args: argparse.Namespace, data_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        log_level="WARNING",
        housekeeping_seconds=3600,
        transcribe_engine="none",
    )
    rnd = random.Random(args.seed + 2)
    numbers = sample_numbers(data_dir / "vreception.db", rnd, args.queries, meta["visits"])
    texts = queries(rnd, args.queries)
    server = TestServer(create_app(settings))
    admin: TestClient[Any, Any] = TestClient(server)
    archivist: TestClient[Any, Any] = TestClient(server)
    await admin.start_server()
    await archivist.start_server()
    try:
        await login(admin, "admin")
        await login(archivist, meta["archivist"])
        await asyncio.sleep(2)  # the recorder's start-up (resuming unfinished processing)
        path = "/api/v1/recordings"
        log("warming up")
        for q in (texts[0][1], texts[1][1]):
            await timed_get(admin, path, {"q": q})
            await timed_get(archivist, path, {"q": q})
        await timed_get(admin, path, {"number": numbers[0]})

        log(f"lookup by number: {len(numbers)} searches (peak RSS so far {rss_mb():.0f} MB)")
        by_number: list[float] = []
        for number in numbers:
            took, page = await timed_get(admin, path, {"number": number}, "lookup_by_number")
            assert page["total"] >= 1 and page["items"][0]["petition_number"] == number, page
            by_number.append(took)

        log(f"full text: {len(texts)} searches as admin and as archivist ({rss_mb():.0f} MB)")
        fulltext: dict[str, list[float]] = {}
        totals: list[int] = []
        as_archivist: list[float] = []
        archivist_totals: list[int] = []
        slowest: list[tuple[float, str, str, int]] = []
        for kind, q in texts:
            took, page = await timed_get(admin, path, {"q": q}, "fulltext")
            fulltext.setdefault(kind, []).append(took)
            totals.append(page["total"])
            slowest.append((took, "admin", q, page["total"]))
            took, page = await timed_get(archivist, path, {"q": q}, "fulltext_as_archivist")
            as_archivist.append(took)
            archivist_totals.append(page["total"])
            slowest.append((took, "archivist", q, page["total"]))
        all_fulltext = [t for ts_ in fulltext.values() for t in ts_]
        slowest.sort(reverse=True)
        for took, who, q, total in slowest[:8]:
            log(f"slow: {took:7.1f} ms  {who:9}  q={q!r}  total={total}")

        media = meta["media_visit"]
        file_path = f"/api/v1/recordings/{media}/files/composite.mp4"
        size = (settings.resolved_recordings_dir / media / "composite.mp4").stat().st_size
        log(
            f"playback: {args.queries} range requests, {size / 1e6:.1f} MB file ({rss_mb():.0f} MB)"
        )
        first_byte: list[float] = []
        for _ in range(args.queries):
            offset = rnd.randrange(size)
            started = time.perf_counter()
            resp = await admin.get(file_path, headers={"Range": f"bytes={offset}-"})
            chunk = await resp.content.readany()
            first_byte.append((time.perf_counter() - started) * 1000)
            assert resp.status == 206, resp.status
            assert chunk, "no body"
            got = len(chunk)
            while chunk := await resp.content.readany():  # the rest, not kept
                got += len(chunk)
            assert got == size - offset, (got, size - offset)
    finally:
        await archivist.close()
        await admin.close()

    figures: dict[str, Any] = {
        "benchmark": "archive",
        "database": "sqlite",
        "lookup_by_number_p50_ms": round(percentile(by_number, 50), 2),
        "lookup_by_number_p99_ms": round(percentile(by_number, 99), 2),
        "fulltext_p50_ms": round(percentile(all_fulltext, 50), 2),
        "fulltext_p99_ms": round(percentile(all_fulltext, 99), 2),
        "fulltext_as_archivist_p50_ms": round(percentile(as_archivist, 50), 2),
        "fulltext_as_archivist_p99_ms": round(percentile(as_archivist, 99), 2),
        "fulltext_by_kind": {
            kind: {
                "n": len(values),
                "p50_ms": round(percentile(values, 50), 2),
                "p99_ms": round(percentile(values, 99), 2),
            }
            for kind, values in sorted(fulltext.items())
        },
        "fulltext_total_median": int(percentile(totals, 50)),
        "fulltext_total_max": max(totals),
        "fulltext_as_archivist_total_median": int(percentile(archivist_totals, 50)),
        "first_byte_p50_ms": round(percentile(first_byte, 50), 2),
        "first_byte_p99_ms": round(percentile(first_byte, 99), 2),
        "composite_mb": round(size / 1e6, 2),
        "cpu_ms": {  # process CPU time per request: the work, apart from waiting for a core
            f"{kind}_{p}": round(percentile(values, int(p[1:])), 2)
            for kind, values in CPU.items()
            for p in ("p50", "p99")
        },
        "queries_per_kind": args.queries,
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--transcripts", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="searches per kind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where to build the dataset (default: a temp dir); reused when it already holds "
        "one of the same sizes, and never removed",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.transcripts = min(args.transcripts, args.visits)
    if args.generate_only:
        meta = generate(args.data_dir, args.visits, args.transcripts, args.seed)
        print(json.dumps(meta, ensure_ascii=False))
        return
    setup_logging("WARNING")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="vr-bench-archive-"))
    data_dir = data_dir.resolve()
    try:
        meta = prepare(args, data_dir)
        figures = asyncio.run(measure(args, data_dir, meta))
        db_bytes = sum(p.stat().st_size for p in data_dir.glob("vreception.db*") if p.is_file())
        result = {
            **figures,
            "visits": meta["visits"],
            "recordings": meta["recordings"],
            "transcripts": meta["transcripts"],
            "text_rows": meta["text_rows"],
            "petitions": meta["petitions"],
            "courts": meta["courts"],
            "db_size_mb": round(db_bytes / 2**20, 1),
            "generation_seconds": meta["generation_seconds"],
            "reused_dataset": meta["reused"],
            "max_rss_mb": round(rss_mb(), 1),
            "generate_max_rss_mb": meta["generate_max_rss_mb"],
            "targets": TARGETS,
            "met": {k: bool(figures[k] <= v) for k, v in TARGETS.items()},
        }
        if args.keep or args.data_dir:
            log(f"dataset kept in {data_dir}")
    finally:
        if not (args.keep or args.data_dir):
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
